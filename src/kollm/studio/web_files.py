"""The playground's file picker: `POST /apps/{slug}/extract` takes one image or recording for a file variable and
answers its text as JSON (OCR here, transcription by the model server: extract.py), which the page puts in the
variable's text box, editable, marked as extracted. Logged in as an editor, with the CSRF token, as every POST
(`web.posted`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData, UploadFile

from kollm.errors import KollmError
from kollm.studio import store
from kollm.studio.extract import extract
from kollm.studio.messages import msg
from kollm.studio.state import State
from kollm.studio.web import login, posted

router = APIRouter()


def _app_exists(st: State, slug: str) -> None:
    with st.db() as s:
        store.get_app(s, slug)  # NotFound: 404


@router.post("/apps/{slug}/extract")
async def extract_file(request: Request, slug: str, user: str = Depends(login),
                       form: FormData = Depends(posted)) -> JSONResponse:
    """{"var", "kind", "text", "confidence" | "language" + "duration", "note"}. `kind` is the editor's current
    choice for the variable (the draft may not be saved yet)."""
    st: State = request.app.state.studio
    await run_in_threadpool(_app_exists, st, slug)
    f = form.get("file")
    if not isinstance(f, UploadFile) or not f.filename:
        raise KollmError(msg("file.none"))
    data = await f.read(st.cfg.max_file_bytes + 1)
    got = await extract(st.client, st.cfg, str(form.get("kind", "")), data, f.filename)
    resp = JSONResponse({"var": str(form.get("var", "")), **got.to_dict()})
    resp.headers["Cache-Control"] = "no-store"  # a receipt's or a meeting's text
    return resp
