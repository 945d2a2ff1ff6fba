"""Persistence: the MongoDB/montydb client getter and the chat history repository."""
