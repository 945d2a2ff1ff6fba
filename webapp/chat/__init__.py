"""The chat app: REST endpoints, services and selectors shared by the office and character apps."""
