"""``coditect-tasks serve``: the HTTP API, the event stream and the live run pages."""
