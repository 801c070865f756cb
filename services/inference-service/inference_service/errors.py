"""Every error the API returns is JSON: {"error": {"code", "message", "field"}}."""
from __future__ import annotations

from fastapi.responses import ORJSONResponse


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_response(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None):
    return ORJSONResponse({"error": {"code": code, "message": message, "field": field}}, status_code=status, headers=headers)
