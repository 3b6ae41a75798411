"""Tests that drive real pages in headless Chromium (Selenium and Debian's chromedriver)."""
