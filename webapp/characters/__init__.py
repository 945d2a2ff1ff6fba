"""The character app: cards, lorebooks, macros and the character library."""
