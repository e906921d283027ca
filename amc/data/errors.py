"""The error raised for missing or corrupt datasets."""


class DatasetError(FileNotFoundError):
    """A dataset is missing or unreadable; the message says where we looked and how to get it."""
