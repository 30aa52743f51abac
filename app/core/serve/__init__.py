"""The local OpenAI-compatible API over the engine service (``llamadesk serve``).

``app.create_app`` builds the ASGI app (Starlette; served by uvicorn); ``guard`` checks every request's Host
header and key; ``requests`` turns a JSON body into a checked request; ``stops`` ends a reply at a stop sequence;
``errors`` shapes every failure the way OpenAI's API does.
"""
