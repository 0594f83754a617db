"""ticketlab: find, train and transfer lottery tickets in pre-trained transformer language models."""

__version__ = "0.1.0"
