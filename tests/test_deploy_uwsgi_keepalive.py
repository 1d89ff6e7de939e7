"""HTTP/1.1 keep-alive through the uWSGI recipes of docs/deploy.md (real pyuwsgi).

uWSGI's HTTP router answers HTTP/1.1 without ``Connection: close``, so clients keep
the connection for the next request; without ``http-keepalive`` the router closes it
anyway, and the next request on it fails (http.client: RemoteDisconnected or
BrokenPipeError; requests.Session: ConnectionResetError on a share of requests).
Both recipes, the ini and the command line, are read from docs/deploy.md.
"""

from deploy_helpers import (check_keepalive, kill_recipe_kernels, uwsgi_command_recipe,
                            uwsgi_ini_recipe)


def test_ini_recipe_keeps_connections_alive(state_dir, tmp_path):
    try:
        with uwsgi_ini_recipe(state_dir, tmp_path) as server:
            check_keepalive(server)
    finally:
        kill_recipe_kernels(state_dir)


def test_command_line_recipe_keeps_connections_alive(state_dir):
    try:
        with uwsgi_command_recipe(state_dir) as server:
            check_keepalive(server)
    finally:
        kill_recipe_kernels(state_dir)
