"""Libraries: named sets of folders and files a person keeps, indexed once and kept current, searched by words
(BM25 over SQLite FTS5) and by meaning (vectors from a GGUF embedding model run by llama.cpp), from any
conversation, the terminal and the API."""
