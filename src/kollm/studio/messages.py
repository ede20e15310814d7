"""The Studio's user-facing messages in one place, Korean first (the UI is Korean), English as the fallback.

`msg(key, **kw)` formats the Korean text of `key` with `kw` (str.format fields); `msg(key, lang="en", ...)` the
English one. A key that is missing in a language falls back to the other, and an unknown key raises KeyError at
once (a typo must fail its test, not show the key to a user). Keep keys short and grouped by page; add a key
instead of writing a message in a route."""

from __future__ import annotations

# key -> (Korean, English)
MESSAGES: dict[str, tuple[str, str]] = {
    # login, setup, sessions
    "login.required": ("먼저 Studio에 로그인하세요", "log in to the Studio first"),
    "login.wrong": ("사용자 이름 또는 비밀번호가 틀렸습니다", "wrong user name or password"),
    "login.throttled": ("틀린 비밀번호가 너무 많습니다. {seconds}초 뒤에 다시 시도하세요",
                        "too many wrong passwords; try again in {seconds} s"),
    "setup.done": ("관리자 비밀번호가 이미 설정되었습니다. 로그인하세요", "the admin password is already set; log in"),
    "setup.token": ("설정 토큰이 틀렸습니다. Studio를 시작한 콘솔에 출력된 토큰을 붙여 넣으세요",
                    "the setup token is wrong; paste the token printed on the Studio's console"),
    "password.short": ("비밀번호는 {n}자 이상이어야 합니다", "the password needs at least {n} characters"),
    "password.differ": ("두 비밀번호가 다릅니다. 같은 비밀번호를 두 번 입력하세요",
                        "the two passwords differ; type the same password twice"),
    "password.current": ("현재 비밀번호가 틀렸습니다", "the current password is wrong"),
    "csrf": ("양식의 보안 토큰이 없거나 만료되었습니다. 페이지를 새로 고친 뒤 다시 시도하세요",
             "the form's security token is missing or stale; reload the page and try again"),
    "form.unreadable": ("양식을 읽을 수 없습니다 ({what})", "the form could not be read ({what})"),
    "role.forbidden": ("이 작업은 {role} 권한이 필요합니다 (현재: {have})",
                       "this needs the {role} role (you are {have})"),
    "role.unknown": ("역할은 admin, editor, viewer 중 하나여야 합니다 (받은 값: {role!r})",
                     "role must be admin, editor or viewer, got {role!r}"),
    "user.name": ("사용자 이름은 영문 소문자, 숫자, . _ - 로 된 1~32자여야 합니다 (받은 값: {name!r})",
                  "a user name is 1-32 lowercase letters, digits, . _ or -, got {name!r}"),
    "user.exists": ("사용자 {name!r}이(가) 이미 있습니다", "there is already a user {name!r}"),
    "user.missing": ("사용자 {name!r}이(가) 없습니다", "there is no user {name!r}"),
    "user.last_admin": ("마지막 관리자는 삭제하거나 강등할 수 없습니다", "the last admin cannot be removed or demoted"),
    # generic
    "not_found.page": ("없는 페이지입니다", "no such page"),
    "method": ("허용되지 않은 메서드입니다", "method not allowed"),
    "number": ("{what}은(는) 정수여야 합니다 (받은 값: {value!r})", "{what} must be a whole number, got {value!r}"),
    "internal": ("내부 오류 ({kind}). Studio 로그를 확인하세요", "internal error ({kind}); see the Studio's log"),
    "body.too_large": ("요청 본문이 너무 큽니다", "the request body is too large"),
    # apps, versions, labels
    "app.missing": ("앱 {slug!r}이(가) 없습니다", "there is no app {slug!r}"),
    "app.confirm": ("삭제하려면 앱 ID {slug!r}를 그대로 입력하세요", "type the app id {slug!r} to delete it"),
    "version.missing": ("앱 {slug!r}에 버전 {n}이(가) 없습니다", "app {slug!r} has no version {n}"),
    "log.missing": ("앱 {slug!r}에 호출 기록 {id}이(가) 없습니다", "app {slug!r} has no log entry {id}"),
    "label.none": ("앱 {slug!r}에 {label!r} 레이블이 붙은 버전이 없습니다. 버전 페이지에서 레이블을 지정하세요",
                   "app {slug!r} has no version labelled {label!r}; set the label on the app page first"),
    "label.unknown": ("레이블은 {labels} 중 하나여야 합니다 (받은 값: {label!r})",
                      "label must be one of {labels}, got {label!r}"),
    # the app endpoint
    "api.key": ("이 앱의 유효한 키가 필요합니다: Authorization: Bearer <앱 키>",
                "a valid key for this app is required: send Authorization: Bearer <app key>"),
    "api.model": ("이 앱은 버전에 지정된 모델로만 실행됩니다. model을 보내지 않거나 {model!r}을(를) 보내세요",
                  "this app runs only on its version's model; leave model out or send {model!r}"),
    "api.rate": ("이 키의 요청 한도({n}회/분)를 넘었습니다. {seconds}초 뒤에 다시 시도하세요",
                 "this key's rate limit ({n} requests a minute) is used up; retry in {seconds} s"),
    # test sets
    "upload.file": ("업로드할 .csv 또는 .jsonl 파일을 선택하세요", "choose a .csv or .jsonl file to upload"),
    "upload.suffix": (".csv 또는 .jsonl 파일을 올리세요 (받은 파일: {name!r})",
                      "upload a .csv or .jsonl file (got {name!r})"),
    "upload.size": ("파일이 {size:,}바이트입니다. 한도는 {limit:,}바이트입니다",
                    "the file is {size:,} bytes; the limit is {limit:,}"),
    "upload.encoding": ("파일을 읽을 수 없습니다: UTF-8도 CP949(EUC-KR)도 아닙니다. UTF-8 CSV로 저장하세요",
                        "the file is neither UTF-8 nor CP949 (EUC-KR) text; save it as CSV UTF-8"),
    "upload.binary": ("CSV나 JSONL 텍스트가 아닌 바이너리 파일입니다", "the file is binary, not CSV or JSONL text"),
    "upload.header": ("CSV에 머리글 행이 없습니다. 첫 행에 열 이름(입력 변수, expected)을 쓰세요",
                      "the CSV has no header row; the first row names the columns (inputs, expected)"),
    "upload.json": ("{line}번째 줄이 JSON이 아닙니다 ({error})", "line {line} is not JSON ({error})"),
    "upload.too_many": ("항목이 {n}개를 넘습니다. 파일을 나누세요", "more than {n} items; split the file"),
    "upload.empty": ("파일에 항목이 없습니다", "the file has no items"),
    "upload.item": ("{n}번 항목: {error}", "item {n}: {error}"),
    "upload.object": ("{n}번 항목: 입력 열을 가진 객체여야 합니다", "item {n}: expected an object with input columns"),
    "upload.no_check": ("채점할 기준이 없습니다: 'expected' 열(정답)이 없고 contains/regex/is_json도 없습니다. "
                        "정답 열의 이름을 expected로 바꾸거나 아래에서 열을 연결하세요 (열: {columns})",
                        "nothing to score: no 'expected' column (and no contains/regex/is_json); rename the answer "
                        "column to expected or map it below (columns: {columns})"),
    "upload.missing_vars": ("템플릿의 변수 {missing}에 해당하는 열이 없습니다 (파일의 열: {columns}). "
                            "열 이름을 바꾸거나 아래에서 열을 연결하세요 (예: 검색어 → query)",
                            "no column for the template's variable(s) {missing} (the file has {columns}); rename "
                            "the columns or map them below (e.g. 검색어 → query)"),
    "upload.extra_cols": ("템플릿에 없는 열 {extra}이(가) 있습니다 (템플릿의 변수: {variables}). "
                          "열 이름을 바꾸거나 아래에서 열을 연결하세요",
                          "column(s) {extra} are not variables of the template ({variables}); rename or map them"),
    "upload.mapping": ("열 연결 {line!r}을(를) 읽을 수 없습니다. 한 줄에 하나씩 '파일 열 = 변수'로 쓰세요",
                       "cannot read the column mapping {line!r}; write one 'file column = variable' per line"),
    "testset.missing": ("앱 {slug!r}에 테스트 세트 {id}이(가) 없습니다", "app {slug!r} has no test set {id}"),
    # file variables (extract.py): an image read by OCR, a recording transcribed by the model server
    "file.none": ("파일을 선택하세요", "choose a file"),
    "file.kind": ("파일 종류는 image 또는 audio여야 합니다 (받은 값: {kind!r})",
                  "the file kind must be image or audio, got {kind!r}"),
    "file.too_large": ("파일이 {limit:,}바이트를 넘습니다. 더 작은 파일을 올리세요 (한도: [studio] max_file_bytes)",
                       "the file is over {limit:,} bytes; send a smaller one (the limit is [studio] max_file_bytes)"),
    "file.empty": ("빈 파일입니다", "the file is empty"),
    "file.ocr_missing": ("이미지의 글자 인식(OCR)을 쓸 수 없습니다: {detail}",
                         "image text recognition (OCR) is unavailable: {detail}"),
    "file.image_bad": ("이미지를 읽을 수 없습니다 ({error}). PNG, JPEG, TIFF, WebP 파일을 올리세요",
                       "the image cannot be read ({error}); upload a PNG, JPEG, TIFF or WebP file"),
    "file.image_blank": ("이미지에서 글자를 찾지 못했습니다. 글자가 잘 보이는 사진을 올리세요",
                         "no text was found in the image; upload a picture where the text is legible"),
    "file.no_transcription": ("모델 서버({url})가 받아쓰기(/v1/audio/transcriptions)를 하지 않습니다. "
                              "모델 서버를 `kollm serve --whisper 폴더`로 시작하거나, 받아쓰기가 되는 서버를 "
                              "Studio의 --model-url로 지정하세요",
                              "the model server ({url}) does not transcribe (/v1/audio/transcriptions); start it "
                              "with `kollm serve --whisper DIR`, or point the Studio's --model-url at a server "
                              "that transcribes"),
    "file.audio_bad": ("음성 파일을 받아쓸 수 없습니다: {error}", "the audio file cannot be transcribed: {error}"),
    "file.audio_blank": ("음성에서 말소리를 찾지 못했습니다", "no speech was found in the recording"),
    "file.data_url": ("{var}의 data URL을 읽을 수 없습니다 ({error}). data:image/png;base64,... 처럼 보내세요",
                      "the data URL for {var} cannot be read ({error}); send e.g. data:image/png;base64,..."),
    "file.mime": ("{var}은(는) {kind} 변수인데 {mime} 데이터가 왔습니다",
                  "{var} is an {kind} variable but the data URL holds {mime}"),
    "file.note_image": ("이미지에서 글자 인식(OCR)으로 읽음 · 신뢰도 {confidence:.0f}%",
                        "read from the image by OCR · confidence {confidence:.0f}%"),
    "file.note_low": (" · 신뢰도가 낮습니다: 글을 확인하세요", " · low confidence: check the text"),
    "file.note_audio": ("음성에서 받아씀 · 언어 {language} · {duration:.1f}초",
                        "transcribed from the recording · language {language} · {duration:.1f} s"),
    # keys
    "key.missing": ("앱 {slug!r}에 키 {id}이(가) 없습니다", "app {slug!r} has no key {id}"),
    # background jobs, feedback, training data, tuning (#25: jobs.py, web_jobs.py, training.py)
    "job.missing": ("작업 {id}이(가) 없습니다", "there is no job {id}"),
    "job.interrupted": ("이 작업이 실행되는 동안 Studio가 멈췄습니다 ({done}/{total} 완료). 다시 실행하세요",
                        "the Studio stopped while this job ran ({done}/{total} done); run it again"),
    "job.resumed": ("이 작업이 실행되는 동안 Studio가 다시 시작되었습니다. 마지막 체크포인트부터 이어서 합니다",
                    "the Studio restarted while this ran; it continues from its last checkpoint"),
    "job.stopped": ("{done}/{total} 항목 뒤에 멈췄습니다", "stopped after {done}/{total} items"),
    "feedback.verdict": ("판정은 good 또는 corrected여야 합니다", "verdict must be good or corrected"),
    "feedback.empty": ("교정한 출력을 쓴 뒤 저장하세요", "write the corrected output before saving it"),
    "feedback.long": ("교정한 출력이 20000자를 넘습니다", "the corrected output is longer than 20000 characters"),
    "feedback.no_inputs": ("이 호출은 입력 없이 기록되어 학습 데이터가 될 수 없습니다",
                           "this call was logged without its inputs, so it cannot become training data"),
    "feedback.missing": ("피드백 {id}이(가) 없습니다", "there is no feedback {id}"),
    "training.source": ("알 수 없는 학습 데이터 종류 {source!r}입니다. {choices} 중에서 고르세요",
                        "unknown training data source {source!r}; choose from {choices}"),
    "training.split": ("split은 train 또는 held-out이어야 합니다", "split must be train or held-out"),
    "training.typos": ("합성 오타 쌍은 입력 변수가 하나인 앱(검색어)에만 쓸 수 있습니다",
                       "synthesized typo pairs need an app with exactly one input variable (the query)"),
    "training.few": ("학습 행이 {n}개뿐입니다. 출력을 좋음/교정으로 표시하거나 테스트 세트나 합성 쌍을 더한 뒤 다시 "
                     "튜닝하세요", "only {n} training rows; mark outputs as good or corrected, add a test set, or "
                     "add synthesized pairs, then tune again"),
    "tune.no_model": ("Studio가 기본 모델 폴더를 모릅니다. --tune-model 폴더(모델 서버의 Hugging Face 폴더)로 "
                      "시작하거나 기본 모델 칸을 채우세요", "the Studio does not know the base model's folder; start "
                      "it with --tune-model DIR (the model server's Hugging Face folder) or fill in the base model"),
    "tune.not_model": ("{path}은(는) Hugging Face 모델 폴더가 아닙니다 (config.json 없음). 모델 서버를 시작한 폴더를 "
                       "주세요", "{path} is not a Hugging Face model folder (no config.json); give the folder the "
                       "model server was started with"),
    "tune.tuned_base": ("v{n}은(는) 이미 튜닝된 모델로 실행됩니다. 기본 모델의 버전에서 튜닝하세요",
                        "version {n} already runs on a tuned model; tune from a version on the base model"),
    "tune.method": ("Studio는 LoRA로 튜닝합니다 (모델 서버는 어댑터를 올립니다). 전체 미세조정은 내보낸 데이터로 "
                    "`kollm tune --method full`을 쓰세요", "the Studio tunes with LoRA (the model server loads "
                    "adapters, not whole models); use `kollm tune --method full` on the exported data"),
    "tune.sources": ("학습 데이터를 하나 이상 고르세요", "choose at least one kind of training data"),
    "tune.number": ("{name}은(는) {lo}에서 {hi} 사이의 수여야 합니다 (받은 값: {value!r})",
                    "{name} must be a number between {lo} and {hi}, got {value!r}"),
    "tune.failed": ("kollm tune이 실패했습니다: {error} (로그: {log})", "kollm tune failed: {error} (log: {log})"),
    "tune.cancelled": ("취소했습니다. 지금까지 쓴 어댑터는 {path}에 있습니다",
                       "cancelled; the adapter written so far is in {path}"),
    "tune.how": ("`kollm serve --model 기본모델 --lora {name}={path}` 또는 --allow-runtime-lora로 서버를 시작하세요 "
                 "(vLLM: --enable-lora와 VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)",
                 "start it with `kollm serve --model BASE --lora {name}={path}` or with --allow-runtime-lora "
                 "(vLLM: --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)"),
    "tune.no_runtime": ("모델 서버가 실행 중에 어댑터를 올릴 수 없습니다 ({status}). {how}",
                        "the model server cannot load adapters at run time ({status}); {how}"),
    "tune.refused": ("모델 서버가 어댑터를 거절했습니다 ({status}: {message}). {how}",
                     "the model server refused the adapter ({status}: {message}); {how}"),
    "tune.unreachable": ("어댑터를 올리려 했지만 모델 서버 {url}에 연결할 수 없습니다 ({kind}). 직접 올리세요: "
                         "POST /v1/load_lora_adapter {body}", "the model server at {url} could not be reached to "
                         "load the adapter ({kind}); load it yourself: POST /v1/load_lora_adapter {body}"),
}


def msg(key: str, lang: str = "ko", **kw: object) -> str:
    """The message `key` in `lang` ("ko" or "en"), formatted with `kw`."""
    ko, en = MESSAGES[key]
    text = (en or ko) if lang == "en" else (ko or en)
    return text.format(**kw) if kw else text
