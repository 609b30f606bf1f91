"""Reusable scripts (issue 17): registration (registry), parameters (params), running them as fleet tasks."""
