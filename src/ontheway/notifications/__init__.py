"""Notifications and ratings.

``messages`` turns an order event into what each person should be told (pure); ``store``
keeps notifications on the order's shard and pushes them to the recipient's inbox;
``consumer`` holds the ``notifications`` and ``ratings`` consumers of the event stream;
``ratings`` records a customer's rating of a delivery and keeps drivers' ratings current.
"""
