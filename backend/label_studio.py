"""A small client for the Label Studio API calls the backend makes (label-studio 1.23)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from backend.settings import Settings


class LabelStudioError(RuntimeError):
    """Label Studio unreachable, refusing our key, or answering an error."""


class LabelStudio:
    """Authenticated calls to one Label Studio server (LABEL_STUDIO_URL + API key)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.url = settings.label_studio_url
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Token {settings.label_studio_api_key}"
        self.timeout = settings.request_timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise LabelStudioError(
                f"Label Studio at {self.url} is unreachable ({exc.__class__.__name__})"
            ) from None
        if resp.status_code == 401:
            raise LabelStudioError(
                f"Label Studio at {self.url} refused the API key (401): check "
                "LABEL_STUDIO_API_KEY (legacy tokens need LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN)"
            )
        if resp.status_code >= 400:
            raise LabelStudioError(f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:300]}")
        return resp.json() if resp.content else None

    def project(self, project_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/projects/{project_id}")

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/api/projects/{project_id}", json=fields)

    def tasks(self, project_id: int, page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Every task of a project, with its annotations, page by page."""
        page = 1
        while True:
            try:
                data = self._call(
                    "GET",
                    "/api/tasks",
                    params={
                        "project": project_id,
                        "page": page,
                        "page_size": page_size,
                        "fields": "all",
                    },
                )
            except LabelStudioError as exc:
                if page > 1 and "404" in str(exc):
                    return  # past the last page
                raise
            tasks = data.get("tasks", []) if isinstance(data, dict) else data
            yield from tasks
            total = data.get("total", 0) if isinstance(data, dict) else 0
            if not tasks or page * page_size >= total:
                return
            page += 1

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> None:
        """Bulk import: [{task, model_version, score, result}, ...]."""
        for start in range(0, len(predictions), 500):
            self._call(
                "POST",
                f"/api/projects/{project_id}/import/predictions",
                json=predictions[start : start + 500],
            )

    def delete_predictions(self, prediction_ids: list[int]) -> int:
        """Delete these predictions, one call each; returns how many went (a prediction
        that is already gone counts as removed)."""
        removed = 0
        for pid in prediction_ids:
            try:
                self._call("DELETE", f"/api/predictions/{int(pid)}/")
            except LabelStudioError as exc:
                if "HTTP 404" not in str(exc):
                    raise
            removed += 1
        return removed
