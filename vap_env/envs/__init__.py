"""Gymnasium environments whose dynamics are the world model."""
