"""The Label Studio API calls the backend makes, through label-studio-sdk's client.

The SDK does authentication: a personal access token (a JWT refresh token) is exchanged at
`/api/token/refresh/` for short-lived access tokens, renewed before they expire; a legacy
token is sent as `Token <key>`. This module adds what the backend needs on top: errors that
say what to fix, task pages as plain dicts, and the header for downloading task images.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
from label_studio_sdk.client import LabelStudio as SdkClient
from label_studio_sdk.core.api_error import ApiError

from backend.settings import Settings

T = TypeVar("T")
CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
# What the backend reads of a listed task: Label Studio's `include` keeps only these names,
# at the task's level and inside each annotation (annotations are serialized with the same
# parameter; predictions whole). A key read of an annotation but missing here would vanish:
# the end-to-end tests read listed annotations back.
TASK_FIELDS = ("id", "data", "annotations", "predictions")
ANNOTATION_FIELDS = (
    "id",
    "result",
    "was_cancelled",
    "created_at",
    "updated_at",
    "lead_time",
    "parent_prediction",
)
DELETE_CALLS = 4  # predictions deleted at once (Label Studio answers each in ~0.1 s)
INCLUDE = ",".join(dict.fromkeys(TASK_FIELDS + ANNOTATION_FIELDS))  # the `include` parameter


class LabelStudioError(RuntimeError):
    """Label Studio unreachable, refusing our key, or answering an error (`status`: its
    HTTP status, None when it did not answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudio:
    """Authenticated calls to one Label Studio server (LABEL_STUDIO_URL + API key)."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.label_studio_url
        try:
            self.sdk = SdkClient(
                base_url=self.url,
                api_key=settings.label_studio_api_key,
                timeout=settings.request_timeout,
                follow_redirects=False,
            )
        except ApiError as exc:  # e.g. an expired personal access token
            raise LabelStudioError(self._refused(exc)) from None

    def _refused(self, exc: ApiError) -> str:
        return (
            f"Label Studio at {self.url} refused the API key ({exc.status_code}): "
            f"{_detail(exc)}. Paste a personal access token (Account & Settings) or, where "
            "the organisation enables them, a legacy token into LABEL_STUDIO_API_KEY"
        )

    def _sdk(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ApiError as exc:
            if exc.status_code == 401:
                raise LabelStudioError(self._refused(exc), 401) from None
            raise LabelStudioError(
                f"{what} -> HTTP {exc.status_code}: {_detail(exc)}", exc.status_code
            ) from None
        except httpx.HTTPError as exc:
            raise LabelStudioError(
                f"Label Studio at {self.url} is unreachable ({exc.__class__.__name__})"
            ) from None

    def auth_header(self) -> dict[str, str]:
        """The Authorization header for Label Studio's own file routes (the access token of
        the moment; a refresh happens here when it expired)."""
        headers = self._sdk("token refresh", self.sdk._client_wrapper.get_headers)
        return {"Authorization": headers["Authorization"]}

    def presign_url(self, task_id: int, uri: str) -> str:
        """Label Studio's route that resolves a cloud storage URI (s3://, gs://,
        azure-blob://) of a task: it redirects to a presigned URL or proxies the bytes."""
        fileuri = base64.urlsafe_b64encode(uri.encode()).decode()
        return f"{self.url}/tasks/{int(task_id)}/presign/?fileuri={fileuri}"

    def project(self, project_id: int) -> dict[str, Any]:
        return self._sdk(f"project {project_id}", lambda: self.sdk.projects.get(project_id).dict())

    def project_exists(self, project_id: int) -> bool:
        """False when Label Studio answers that it has no such project (404)."""
        try:
            self.project(project_id)
        except LabelStudioError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def update_project(self, project_id: int, **fields: Any) -> None:
        self._sdk(
            f"update project {project_id}", lambda: self.sdk.projects.update(project_id, **fields)
        )

    def tasks(self, project_id: int, page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Every task of a project, with its annotations and predictions, page by page (one
        page in memory at a time)."""
        page = 1
        while True:
            items, total = self.tasks_page(project_id, page, page_size)
            yield from items
            if not items or page * page_size >= total:
                return
            page += 1

    def tasks_page(
        self, project_id: int, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of a project's tasks (pages from 1) and the project's task count; a page
        past the last one is empty. Only the fields read (TASK_FIELDS, ANNOTATION_FIELDS), as
        plain JSON: the SDK's typed tasks cost half as much again as Label Studio's answer
        (500 tasks: 1.6 s of model conversion beside 3.4 s of waiting, measured here), and
        every field made a warm 2,000-task scoring 21.8 s instead of 13.6 s."""

        def call() -> Any:
            response = self.sdk._client_wrapper.httpx_client.request(
                "api/tasks/",
                method="GET",
                params={
                    "project": project_id,
                    "page": page,
                    "page_size": page_size,
                    "fields": "all",
                    "include": INCLUDE,
                },
            )
            if not 200 <= response.status_code < 300:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                raise ApiError(status_code=response.status_code, body=body)
            return response.json()

        try:
            body = self._sdk(f"tasks of project {project_id}", call)
        except LabelStudioError as exc:
            if page > 1 and "HTTP 404" in str(exc):
                return [], 0  # past the last page (the task count fell meanwhile)
            raise
        except ValueError:  # not JSON
            raise LabelStudioError(f"tasks of project {project_id}: not a JSON answer") from None
        items = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise LabelStudioError(f"tasks of project {project_id}: no task list in the answer")
        total = body.get("total")
        if not isinstance(total, int):  # without it the pages cannot be walked
            raise LabelStudioError(f"tasks of project {project_id}: no task count in the answer")
        return [t for t in items if isinstance(t, dict)], total

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> None:
        """Bulk import: [{task, model_version, score, result}, ...]."""
        for start in range(0, len(predictions), 500):
            chunk = predictions[start : start + 500]
            self._sdk(
                f"import predictions into project {project_id}",
                lambda c=chunk: self.sdk.projects.import_predictions(project_id, request=c),
            )

    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        return self._sdk(
            f"ML backends of project {project_id}",
            lambda: [b.dict() for b in self.sdk.ml.list(project=project_id)],
        )

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return self._sdk(
            f"webhooks of project {project_id}",
            lambda: [h.dict() for h in self.sdk.webhooks.list(project=str(project_id))],
        )

    def set_webhook_headers(self, webhook_id: int, headers: dict[str, str]) -> None:
        self._sdk(
            f"update webhook {webhook_id}",
            lambda: self.sdk.webhooks.update(int(webhook_id), headers=headers),
        )

    def delete_predictions(self, prediction_ids: list[int]) -> int:
        """Delete these predictions, one call each, `DELETE_CALLS` at a time; returns how
        many went (a prediction that is already gone counts as removed). At the first
        refusal other than 404 the calls not yet started are dropped, and a refusal is
        raised once the calls under way have ended: an unreachable or refusing Label Studio
        costs a few calls, not one per prediction."""
        failed = threading.Event()

        def delete(pid: int) -> None:
            if failed.is_set():
                return
            try:
                self._sdk(f"delete prediction {pid}", lambda: self.sdk.predictions.delete(pid))
            except LabelStudioError as exc:
                if "HTTP 404" not in str(exc):
                    failed.set()
                    raise

        with ThreadPoolExecutor(DELETE_CALLS) as pool:
            calls = [pool.submit(delete, int(p)) for p in prediction_ids]
        errors = [c.exception() for c in calls if c.exception() is not None]
        if errors:
            raise errors[0]
        return len(prediction_ids)


def _detail(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("detail") or body
    return str(body)[:300]
