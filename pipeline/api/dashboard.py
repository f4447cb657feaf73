"""Placeholder router (filled in by issue 4's work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
