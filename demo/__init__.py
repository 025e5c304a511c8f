"""The demo's side of the project: what only ``app.py`` needs (Gradio, HTTP clients, the demo's disk and
its views). The library, ``mdsr``, imports nothing from here."""
