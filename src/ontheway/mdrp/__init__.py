"""The Meal Delivery Routing Problem (Reyes et al., 2018) on Grubhub's public instances:
reading them, replaying them with a dispatch policy, writing, checking and scoring solutions."""
