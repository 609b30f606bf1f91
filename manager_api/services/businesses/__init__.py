"""Businesses (document 001): deploy, update, stop, their state and their components' reports."""
