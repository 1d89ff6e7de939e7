"""kernel/asking.py on its own: the request's stdin first, then asking, each outcome."""

import threading

import pytest

from wsgikernel.kernel.asking import NO_MORE_INPUT, Asker
from wsgikernel.kernel.capture import StdinText


class Ends:
    """What an Asker writes and sends; answers each input_request with ``reply``."""

    def __init__(self, reply=None, on_request=None):
        self.written, self.sent, self.reply = [], [], reply
        self.on_request = on_request  # (envelope): instead of the answer (it may raise)
        self.asker = Asker(self.written.append, self.send, lambda: 7)

    def send(self, envelope):
        self.sent.append(envelope)
        if envelope["type"] == "input_request" and self.on_request is not None:
            self.on_request(envelope)
        elif envelope["type"] == "input_request" and self.reply is not None:
            body = {"seq": envelope["body"]["seq"], "value": self.reply}
            threading.Thread(target=self.asker.answered, args=(body,)).start()


def test_the_request_stdin_comes_first_then_eof_when_asking_is_not_allowed():
    ends = Ends()
    ends.asker.start_cell(StdinText("x\ny"), False, None)
    assert ends.asker.input() == "x"
    assert ends.asker.input("prompt> ") == "y"
    with pytest.raises(EOFError) as raised:
        ends.asker.input("again> ")
    assert str(raised.value) == NO_MORE_INPUT and "allow_stdin" in NO_MORE_INPUT
    assert ends.written == ["prompt> ", "again> "] and ends.sent == []
    ends.asker.start_cell(StdinText("fresh\n"), False, None)  # the next cell's stdin
    assert ends.asker.input() == "fresh"


def test_asked_the_answer_is_returned_and_written_as_a_transcript():
    ends = Ends(reply="Ada")
    ends.asker.start_cell(StdinText(""), True, 5)
    assert ends.asker.input("Name: ") == "Ada"
    [request] = ends.sent
    assert request["type"] == "input_request" and request["parent"] == 7
    assert request["body"] == {"prompt": "Name: ", "password": False, "seq": 1}
    assert ends.written == ["Name: Ada\n"]


def test_a_password_is_returned_but_never_written():
    ends = Ends(reply="s3cret")
    ends.asker.start_cell(StdinText(""), True, 5)
    assert ends.asker.getpass() == "s3cret"
    assert ends.sent[0]["body"]["password"] is True
    assert ends.written == ["Password: \n"]


def test_no_answer_in_time_ends_the_request_with_eof():
    ends = Ends()
    ends.asker.start_cell(StdinText(""), True, 0.01)
    with pytest.raises(EOFError) as raised:
        ends.asker.input()
    assert "input_timeout" in str(raised.value)
    assert [m["type"] for m in ends.sent] == ["input_request", "input_end"]
    assert ends.sent[1]["body"] == {"seq": 1}
    ends.asker.answered({"seq": 1, "value": "too late"})  # kept from the next request
    ends.reply = "on time"
    assert ends.asker.input() == "on time"


def test_answers_for_another_request_or_not_text_are_ignored():
    ends = Ends()
    ends.asker.start_cell(StdinText(""), True, 0.05)
    ends.asker.answered({"seq": 0, "value": "stale"})
    ends.asker.answered({"seq": 1, "value": 5})
    with pytest.raises(EOFError):
        ends.asker.input()


def test_only_the_cells_own_thread_is_asked():
    ends = Ends(reply="never")
    ends.asker.start_cell(StdinText(""), True, 5)
    raised = []

    def other():
        try:
            ends.asker.input()
        except EOFError as exc:
            raised.append(exc)
    thread = threading.Thread(target=other)
    thread.start()
    thread.join(10)
    assert raised and ends.sent == []


def test_an_answer_to_an_earlier_request_never_answers_a_later_one():
    ends = Ends()
    ends.asker.start_cell(StdinText(""), True, 0.2)
    with pytest.raises(EOFError):
        ends.asker.input()
    ends.asker.answered({"seq": 1, "value": "late"})  # for the request that timed out
    ends.reply = "fresh"
    assert ends.asker.input() == "fresh"


def test_eof_answers_with_end_of_input():
    ends = Ends(on_request=lambda envelope: ends.asker.answered(
        {"seq": envelope["body"]["seq"], "eof": True}))
    ends.asker.start_cell(StdinText(""), True, 5)
    with pytest.raises(EOFError, match="end of input"):
        ends.asker.input()
    assert [m["type"] for m in ends.sent] == ["input_request"]


def test_an_interrupt_anywhere_in_the_wait_still_ends_the_request():
    def interrupted(envelope):
        raise KeyboardInterrupt  # SIGINT right after the request went out
    ends = Ends(on_request=interrupted)
    ends.asker.start_cell(StdinText(""), True, 5)
    with pytest.raises(KeyboardInterrupt):
        ends.asker.input()
    assert [m["type"] for m in ends.sent] == ["input_request", "input_end"]
