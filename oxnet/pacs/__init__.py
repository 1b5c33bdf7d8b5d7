"""Run the detector on the chest X-rays an Orthanc PACS receives and store a DICOM SR beside each.

``python -m oxnet.pacs --orthanc http://127.0.0.1:8042 --model DIR [--study UID] [--once]
[--state FILE]``:

* without ``--study`` it follows Orthanc's changes feed (``/changes?since=N&limit=M``): every
  ``NewInstance`` is a candidate; with ``--once`` it stops when the feed is exhausted, else it polls
  every ``--interval`` seconds. With ``--study`` it reports every instance of that study once.
* Candidates are fetched over the REST API (``/instances/{id}/file``); instances that are not
  images of the accepted modalities (``--modalities``, default CR and DX) are skipped: SRs (this
  program's own reports included), presentation states, key objects, other modalities.
* Each image is read as training reads DICOM (:func:`oxnet.data.io.read_raw`), run through
  ``oxnet.deploy.runtime.load_model(DIR).predict``, filtered by the folder's per-class operating
  thresholds (``thresholds.json``) when it has them, and reported by
  :func:`oxnet.deploy.sr.build_sr` (an image without findings gets a report saying so). The SR is
  stored in the image's study (``POST /instances``), in one series per study and model.
* Idempotent: an image is not reported twice by the same model. The state file remembers what was
  reported, and before reporting an image the study's reports of this model in Orthanc are read
  (the evidence each references), so a lost or stale state file does not duplicate reports either;
  and the same report has the same SOP Instance UID, which Orthanc stores once.
* Resumable: the changes cursor is saved atomically in the state file after every change, so a
  restarted run continues where the last one stopped.
* An image that cannot be read or reported is logged and recorded in the state file (``failed``)
  and the run goes on; the exit status is 1 when any failed.
* Logging in: a PACS with authentication on (Orthanc's ``AuthenticationEnabled``,
  ``RegisteredUsers``) gets HTTP Basic credentials from ``--credentials FILE`` (``user:password`` on
  its first line; keep it mode 600) or from ``OXNET_ORTHANC_USER`` and ``OXNET_ORTHANC_PASSWORD``,
  never from the command line (a URL with a password is refused: it would be kept in the shell
  history and in logs). HTTPS verifies the server's certificate, against ``--ca-file`` when given.
  A refused login (401/403) or an unreachable PACS is retried with a bounded back-off
  (``--retries``, doubling from ``--retry-delay`` seconds, at most 60 s apart), then the run stops
  with exit status 2 and a message saying what to check.
"""

import base64
import json
import logging
import os
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from oxnet.deploy.phi import redact
from oxnet.utils.atomic import atomic_write_json

__all__ = ["Backoff", "OrthancClient", "OrthancError", "Reporter", "State", "main", "read_credentials"]

logger = logging.getLogger("oxnet.pacs")

#: SOP classes that are never chest X-ray images: every SR class shares this prefix.
SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
DEFAULT_MODALITIES = ("CR", "DX")


ENV_USER, ENV_PASSWORD = "OXNET_ORTHANC_USER", "OXNET_ORTHANC_PASSWORD"


class OrthancError(RuntimeError):
    """An Orthanc request that failed; the message names the method, the path and the answer.
    ``status`` is the HTTP status (None when the PACS was not reached)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status

    @property
    def retryable(self):
        """A refused login or an unreachable PACS (worth waiting for), not a bad request."""
        return self.status in (None, 401, 403, 502, 503, 504)


def read_credentials(path=None, environ=os.environ):
    """``(user, password)`` from ``path`` (``user:password`` on its first line) or from
    ``OXNET_ORTHANC_USER`` / ``OXNET_ORTHANC_PASSWORD``; None when neither is given."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                line = f.readline().strip()
        except OSError as e:
            raise ValueError(f"credentials file {path}: {e.strerror}") from None
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise ValueError(f"credentials file {path}: its first line must be 'user:password'")
        return user, password
    user, password = environ.get(ENV_USER), environ.get(ENV_PASSWORD)
    if bool(user) != bool(password):
        raise ValueError(f"set both {ENV_USER} and {ENV_PASSWORD}, or neither")
    return (user, password) if user else None


class OrthancClient:
    """The few calls of Orthanc's REST API this module needs (standard library only), with HTTP Basic
    credentials (``(user, password)``) and certificate verification (``cafile``) when given."""

    def __init__(self, url, timeout=60.0, credentials=None, cafile=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"--orthanc {url!r}: give Orthanc's REST API as http://HOST:PORT or https://HOST:PORT"
            )
        if parts.username or parts.password:
            raise ValueError(
                "--orthanc: do not put credentials in the URL (they end up in the shell history and logs); "
                f"use --credentials FILE or {ENV_USER} / {ENV_PASSWORD}"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = None
        if credentials:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")
            self._auth = "Basic " + token
        self._context = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
        if cafile and parts.scheme != "https":
            raise ValueError("--ca-file is for an https:// Orthanc URL")

    def request(self, method, path, data=None, content_type=None, raw=False):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                given = "the credentials given were refused" if self._auth else "no credentials were given"
                raise OrthancError(
                    f"{method} {self.url}{path}: HTTP {e.code}: Orthanc requires a login and {given}; set "
                    f"--credentials FILE or {ENV_USER} / {ENV_PASSWORD} to a user of its RegisteredUsers",
                    e.code,
                ) from e
            detail = e.read()[:500].decode("utf-8", "replace")
            raise OrthancError(f"{method} {self.url}{path}: HTTP {e.code} {detail}", e.code) from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise OrthancError(
                f"{method} {self.url}{path}: {reason} (is Orthanc running at {self.url}?)"
            ) from e
        if raw:
            return body
        try:
            return json.loads(body)
        except ValueError as e:
            raise OrthancError(f"{method} {self.url}{path}: not JSON: {body[:200]!r}") from e

    def get(self, path, raw=False):
        return self.request("GET", path, raw=raw)

    def system(self):
        return self.get("/system")

    def changes(self, since, limit=100):
        return self.get(f"/changes?since={int(since)}&limit={int(limit)}")

    def instance_file(self, orthanc_id):
        return self.get(f"/instances/{orthanc_id}/file", raw=True)

    def store(self, dicom_bytes):
        return self.request("POST", "/instances", data=dicom_bytes, content_type="application/dicom")

    def lookup_study(self, study_uid):
        """The Orthanc id of a Study Instance UID, or None."""
        found = self.request(
            "POST", "/tools/lookup", data=study_uid.encode("ascii"), content_type="text/plain"
        )
        return next((f["ID"] for f in found if f.get("Type") == "Study"), None)


class State:
    """The state file: the changes cursor, the reported images ({SOP Instance UID: SR SOP Instance
    UID}) and the failures ({SOP Instance UID: message}), written atomically after each change."""

    def __init__(self, path, orthanc_url):
        self.path = os.fspath(path) if path else None
        self.data = {"orthanc": orthanc_url, "since": 0, "reported": {}, "failed": {}}
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"state file {self.path}: unreadable ({type(e).__name__}: {e}); move it "
                    "away to start again (reports already in Orthanc are not repeated)"
                ) from e
            if not isinstance(data, dict) or not isinstance(data.get("since"), int):
                raise ValueError(f"state file {self.path}: field 'since' missing or not an integer")
            if data.get("orthanc") not in (None, orthanc_url):
                raise ValueError(
                    f"state file {self.path} belongs to {data['orthanc']}, not {orthanc_url}; "
                    "use one state file per Orthanc"
                )
            for key in ("reported", "failed"):
                if not isinstance(data.get(key, {}), dict):
                    raise ValueError(f"state file {self.path}: field {key!r} is not an object")
                self.data[key] = data.get(key, {})
            self.data["since"] = data["since"]

    @property
    def since(self):
        return self.data["since"]

    def save(self, since=None):
        if since is not None:
            self.data["since"] = int(since)
        if self.path:
            atomic_write_json(self.path, self.data, indent=1, sort_keys=True)


class Reporter:
    """Reports images of one Orthanc with one model."""

    def __init__(
        self, client, model, state, modalities=DEFAULT_MODALITIES, use_thresholds=True, caps=(3, 10)
    ):
        self.client, self.model, self.state = client, model, state
        self.modalities = {m.upper() for m in modalities}
        self.use_thresholds = use_thresholds
        self.caps = tuple(caps)
        from oxnet.deploy.runtime import read_thresholds_info

        # how the operating points were chosen, stated in every SR: read once, not per image
        self.thresholds_info = read_thresholds_info(getattr(model, "folder", None))
        self._study_reports = {}  # Orthanc study id -> SOP Instance UIDs this model reported there
        self.counts = {"reported": 0, "skipped": 0, "already": 0, "failed": 0}

    # -------------------------------------------------------------------------------- what to skip
    def _skip_reason(self, ds):
        sop_class = str(ds.get("SOPClassUID", ""))
        modality = str(ds.get("Modality", "")).upper()
        if sop_class.startswith(SR_CLASS_PREFIX) or modality == "SR":
            return "a structured report"
        if modality not in self.modalities:
            return f"modality {modality or '(none)'} is not one of {', '.join(sorted(self.modalities))}"
        if "PixelData" not in ds:
            return "no pixel data"
        return None

    def _reports_in_study(self, study_id, study_uid):
        """SOP Instance UIDs that this model's reports in the study reference (read from Orthanc)."""
        if study_id in self._study_reports:
            return self._study_reports[study_id]
        import pydicom

        from oxnet.deploy.sr import referenced_instances, report_series_uid

        series_uid = report_series_uid(study_uid, self.model.info)
        uids = set()
        for series in self.client.get(f"/studies/{study_id}/series"):
            if series.get("MainDicomTags", {}).get("SeriesInstanceUID") != series_uid:
                continue
            for inst in series.get("Instances", []):
                data = self.client.instance_file(inst)
                uids |= referenced_instances(pydicom.dcmread(_buffer(data), stop_before_pixels=True))
        self._study_reports[study_id] = uids
        return uids

    # ----------------------------------------------------------------------------------- one image
    def process(self, orthanc_id):
        """Report one Orthanc instance if it is a new chest X-ray; returns what happened."""
        import pydicom

        data = self.client.instance_file(orthanc_id)
        try:
            ds = pydicom.dcmread(_buffer(data), force=True)
        except Exception as e:  # the header did not parse: its values cannot be redacted, name the error only
            return self._fail(orthanc_id, f"instance {orthanc_id}: invalid DICOM ({type(e).__name__})")
        reason = self._skip_reason(ds)
        sop_uid = str(ds.get("SOPInstanceUID", ""))
        if reason:
            logger.debug("skip instance %s (%s): %s", orthanc_id, sop_uid, reason)
            self.counts["skipped"] += 1
            return "skipped"
        info = self.client.get(f"/instances/{orthanc_id}")
        series = self.client.get(f"/series/{info['ParentSeries']}")
        study_id = series["ParentStudy"]
        known = self.state.data["reported"]
        if sop_uid in known or sop_uid in self._reports_in_study(study_id, str(ds.StudyInstanceUID)):
            self.state.data["reported"].setdefault(sop_uid, None)
            logger.info("instance %s (%s): already reported", orthanc_id, sop_uid)
            self.counts["already"] += 1
            return "already"
        try:
            sr_uid, n = self._report(ds, data)
        except OrthancError:  # the server, not the image: stop here, the cursor stays before it
            raise
        except Exception as e:  # one bad image must not stop the feed
            return self._fail(
                sop_uid or orthanc_id,
                f"instance {orthanc_id} ({sop_uid}): {type(e).__name__}: {redact(str(e), ds)}",
            )
        self._study_reports.setdefault(study_id, set()).add(sop_uid)
        self.state.data["reported"][sop_uid] = sr_uid
        self.state.data["failed"].pop(sop_uid, None)
        self.counts["reported"] += 1
        logger.info(
            "instance %s (%s): %d finding(s), SR %s stored in study %s",
            orthanc_id,
            sop_uid,
            n,
            sr_uid,
            ds.StudyInstanceUID,
        )
        return "reported"

    def _report(self, ds, data):
        from oxnet.data.io import read_raw
        from oxnet.deploy.runtime import apply_thresholds
        from oxnet.deploy.sr import build_sr, operating_point_parameters, sr_bytes

        with tempfile.TemporaryDirectory(prefix="oxnet-pacs-") as tmp:
            path = os.path.join(tmp, "image.dcm")
            with open(path, "wb") as f:
                f.write(data)
            image = read_raw(path)
        result = self.model.predict(image)
        thresholds = self.model.thresholds if self.use_thresholds else None
        result = apply_thresholds(result, thresholds, *self.caps)
        points = operating_point_parameters(thresholds, self.thresholds_info if thresholds else None)
        sr = build_sr(ds, result, self.model.info, operating_points=points)
        answer = self.client.store(sr_bytes(sr))
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise OrthancError(f"POST /instances answered {answer}")
        return str(sr.SOPInstanceUID), len(result["detections"])

    def _fail(self, key, message):
        logger.error("%s", message)
        self.state.data["failed"][key] = message
        self.counts["failed"] += 1
        return "failed"

    # ------------------------------------------------------------------------------------- drivers
    def follow_changes(self, once=False, interval=5.0, limit=100, backoff=None):
        """Process the changes feed from the state's cursor; with ``once`` stop when it is done. A
        refused login or an unreachable PACS is retried by ``backoff`` (:class:`Backoff`), which
        raises when its tries are spent; other errors are retried every ``interval`` seconds (with
        ``once``: raised)."""
        backoff = backoff or Backoff()
        while True:
            try:
                answer = self.client.changes(self.state.since, limit)
                backoff.reset()
                for change in answer.get("Changes", []):
                    if change.get("ChangeType") == "NewInstance":
                        self.process(change["ID"])
                    self.state.save(since=change["Seq"])
            except OrthancError as e:
                if e.retryable:
                    backoff.wait(e)
                    continue
                if once:
                    raise
                logger.warning("%s; retrying in %g s from change %d", e, interval, self.state.since)
                time.sleep(interval)
                continue
            if answer.get("Changes"):
                logger.info("changes up to %d processed (%s)", self.state.since, self._summary())
            if answer.get("Done", True):
                self.state.save(since=max(self.state.since, int(answer.get("Last", self.state.since))))
                if once:
                    return
                time.sleep(interval)

    def report_study(self, study_uid):
        """Process every instance of one study."""
        study_id = self.client.lookup_study(study_uid)
        if study_id is None:
            raise OrthancError(
                f"study {study_uid} is not in {self.client.url} (check the Study Instance UID, e.g. in "
                "Orthanc Explorer's study page)",
                404,
            )
        instances = self.client.get(f"/studies/{study_id}/instances")
        for i, inst in enumerate(instances):
            self.process(inst["ID"])
            self.state.save()
            logger.info("study %s: %d/%d instances (%s)", study_uid, i + 1, len(instances), self._summary())

    def _summary(self):
        return ", ".join(f"{k} {v}" for k, v in self.counts.items())


class Backoff:
    """Bounded exponential back-off: :meth:`wait` sleeps ``delay``, doubling up to ``cap`` seconds,
    and after ``retries`` waits in a row raises the error it was given."""

    def __init__(self, retries=5, delay=1.0, cap=60.0, sleep=time.sleep):
        self.retries, self.delay, self.cap, self.sleep = int(retries), float(delay), float(cap), sleep
        self.tries = 0

    def reset(self):
        self.tries = 0

    def wait(self, error):
        if self.tries >= self.retries:
            raise error
        seconds = min(self.cap, self.delay * 2**self.tries)
        self.tries += 1
        logger.warning("%s; try %d of %d in %g s", error, self.tries, self.retries, seconds)
        self.sleep(seconds)

    def call(self, fn, *args):
        """``fn(*args)``, retried on retryable :class:`OrthancError`."""
        while True:
            try:
                out = fn(*args)
                self.reset()
                return out
            except OrthancError as e:
                if not e.retryable:
                    raise
                self.wait(e)


def _buffer(data):
    """A bytes buffer pydicom can read."""
    import io

    return io.BytesIO(data)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m oxnet.pacs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orthanc", required=True, help="Orthanc's REST API, e.g. http://127.0.0.1:8042")
    parser.add_argument("--model", required=True, help="model folder (trained or exported)")
    parser.add_argument("--study", help="report this Study Instance UID instead of following the changes")
    parser.add_argument("--once", action="store_true", help="stop when the changes feed is exhausted")
    parser.add_argument(
        "--state",
        help="state file (changes cursor, reported images), JSON, written atomically after every change",
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    parser.add_argument("--limit", type=int, default=100, help="changes per request (default 100)")
    parser.add_argument(
        "--modalities",
        default=",".join(DEFAULT_MODALITIES),
        help="modalities to report, comma-separated (default CR,DX)",
    )
    parser.add_argument(
        "--no-thresholds",
        action="store_true",
        help="ignore the model folder's thresholds.json (report every box above the model's score threshold)",
    )
    parser.add_argument("--backend", choices=("onnx", "torchscript", "eager"), help="model backend")
    parser.add_argument(
        "--allow-uncalibrated",
        action="store_true",
        help="store SRs of a model without operating points (thresholds.json: python -m "
        "oxnet.deploy.thresholds), or with --no-thresholds",
    )
    parser.add_argument(
        "--max-findings-per-class", type=int, default=3, help="findings per class in an SR (default 3)"
    )
    parser.add_argument("--max-findings-per-image", type=int, default=10, help="findings per SR (default 10)")
    parser.add_argument(
        "--credentials",
        help=f"file whose first line is 'user:password' for Orthanc (else {ENV_USER} / {ENV_PASSWORD})",
    )
    parser.add_argument("--ca-file", help="CA certificates (PEM) that verify an https:// Orthanc")
    parser.add_argument("-v", "--verbose", action="store_true", help="also highdicom per-attribute messages")
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        help="tries after a refused login or an unreachable PACS (default 5)",
    )
    parser.add_argument(
        "--retry-delay", type=float, default=2.0, help="first wait between tries, doubling (s)"
    )
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # highdicom logs a line per copied attribute of every SR at INFO: only with -v
    logging.getLogger("highdicom").setLevel(logging.INFO if args.verbose else logging.WARNING)

    from oxnet.deploy.runtime import load_model

    backoff = Backoff(args.retries, args.retry_delay)
    try:
        client = OrthancClient(
            args.orthanc, credentials=read_credentials(args.credentials), cafile=args.ca_file
        )
        not_orthanc = (
            f"{client.url} does not answer as Orthanc: is --orthanc its REST API (default port 8042)?"
        )
        try:
            system = backoff.call(client.system)
        except OrthancError as e:
            if e.status in (404, 405):
                raise OrthancError(f"{not_orthanc} (/system: HTTP {e.status})", e.status) from e
            raise
        if not isinstance(system, dict) or "Version" not in system or "ApiVersion" not in system:
            raise OrthancError(not_orthanc)
        version = system["Version"]
        state = State(args.state, client.url)
        model = load_model(args.model, backend=args.backend)
        uncalibrated = args.no_thresholds or not model.thresholds
        if uncalibrated and not args.allow_uncalibrated:
            raise ValueError(
                f"{args.model} has no operating points (thresholds.json): its SRs would list every box "
                "above the model's test threshold. Choose them on a validation set with python -m "
                "oxnet.deploy.thresholds --model ... --val ... --images ..., or pass --allow-uncalibrated"
            )
    except (OrthancError, FileNotFoundError, ValueError) as e:
        logger.error("%s", e)
        return 2
    where = f"study {args.study}" if args.study else f"changes cursor {state.since}"
    logger.info("Orthanc %s at %s; model %s; %s", version, client.url, model, where)
    reporter = Reporter(
        client,
        model,
        state,
        modalities=[m for m in args.modalities.split(",") if m],
        use_thresholds=not args.no_thresholds,
        caps=(args.max_findings_per_class, args.max_findings_per_image),
    )
    try:
        if args.study:
            reporter.report_study(args.study)
        else:
            reporter.follow_changes(once=args.once, interval=args.interval, limit=args.limit, backoff=backoff)
    except KeyboardInterrupt:
        logger.info("interrupted; cursor %d saved", state.since)
    except OrthancError as e:
        if args.study:  # one study: no changes cursor is involved
            logger.error("%s", e)
        else:
            logger.error("%s; cursor %d saved, run again to resume", e, state.since)
        return 2
    logger.info("done: %s", reporter._summary())
    return 1 if reporter.counts["failed"] else 0
