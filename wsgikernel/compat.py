"""The original tutorial's API, kept working: /env/create, /env/delete, /env/get, POST /."""


class CompatApi:
    def __init__(self, app):
        self.manager = app.manager
