"""The transcript: messages rendered from Markdown, code blocks highlighted, replies streaming in."""
