"""Real servers on 127.0.0.1 for the tests: hypercorn (app.py, run.py) and raw sockets."""
