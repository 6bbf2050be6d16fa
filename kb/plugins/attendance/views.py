"""Pages of the attendance plugin: my trainings, check-in, organiser pages and reports."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from markupsafe import Markup
from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased
from wtforms import DateField, FloatField, SelectField, StringField, TextAreaField, TimeField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from kb import audit, ratelimit
from kb.authz import (
    LEARNER_ROLES,
    REPORT_ROLES,
    get_org_or_404,
    get_user_or_404,
    in_scope,
    login_required,
    managed_org_ids,
    public,
    roles_required,
    scoped_orgs,
)
from kb.extensions import db
from kb.models import OrgUnit, User

from . import service
from .models import (
    ATTENDED,
    LATE,
    LEAVE,
    PRESENT,
    STATUSES,
    Enrolment,
    LeaveRequest,
    MarkLog,
    Record,
    TrainingClass,
    TrainingSession,
)

bp = Blueprint("attendance", __name__, url_prefix="/attendance", template_folder="templates",
               static_folder="static", static_url_path="/attendance-static")

ORGANISER_ROLES = tuple(sorted(REPORT_ROLES))
organiser_only = roles_required(*ORGANISER_ROLES)
DEVICE_COOKIE = "kb_att_device"
_DEVICE_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_PICK = 300
ROLE_LABELS = {"deputy": _l("人大代表"), "presidium": _l("主席团成员"),
               "chair": _l("人大主席/副主席"), "secretary": _l("人大秘书")}


@bp.app_template_filter("att_local")
def att_local(value, fmt="%Y-%m-%d %H:%M"):
    local = service.to_local(value)
    return local.strftime(fmt) if local else ""


@bp.app_template_filter("att_status")
def att_status(status):
    return service.status_name(status)


@bp.app_template_filter("att_note")
def att_note(note):
    return service.note_text(note)


# How a record came about (Record.source), for the session export.
SOURCE_LABELS = {"qr": _l("扫码签到"), "code": _l("输入签到码"), "manual": _l("组织者标记"),
                 "paper": _l("纸质签到表"), "leave": _l("批准请假"), "auto": _l("自动记为缺席")}


@bp.app_template_filter("att_pct")
def att_pct(value):
    return "—" if value is None else f"{value * 100:.1f}%"


# -- object access -------------------------------------------------------------------------------

def _manages(klass: TrainingClass) -> bool:
    return current_user.role in REPORT_ROLES and in_scope(current_user, klass.org_unit_id)


def get_class_or_404(class_id: int) -> TrainingClass:
    klass = db.session.get(TrainingClass, class_id)
    if klass is None or not _manages(klass):
        abort(404)
    return klass


def get_session_or_404(session_id: int) -> TrainingSession:
    session = db.session.get(TrainingSession, session_id)
    if session is None or not _manages(session.klass):
        abort(404)
    return session


def _candidates(klass: TrainingClass):
    """People the organiser may enrol in the class: learners under the class's unit, in scope."""
    query = (select(User).join(OrgUnit, OrgUnit.id == User.org_unit_id)
             .where(OrgUnit.path.startswith(klass.org_unit.path), User.active.is_(True),
                    User.role.in_(sorted(LEARNER_ROLES))))
    ids = managed_org_ids(current_user)
    if ids is not None:
        query = query.where(User.org_unit_id.in_(ids or {-1}))
    return query


def _organisable_orgs():
    return db.session.scalars(scoped_orgs(current_user)
                              .where(OrgUnit.kind.in_(("county", "township")), OrgUnit.is_active.is_(True))
                              .order_by(OrgUnit.path)).all()


def _township_ids() -> list[int]:
    query = select(OrgUnit.id).where(OrgUnit.kind == "township")
    ids = managed_org_ids(current_user)
    if ids is not None:
        query = query.where(OrgUnit.id.in_(ids or {-1}))
    return list(db.session.scalars(query))


# -- device cookie -------------------------------------------------------------------------------

def _device() -> tuple[str, bool]:
    value = request.cookies.get(DEVICE_COOKIE, "")
    if _DEVICE_RE.match(value):
        return value, False
    return secrets.token_hex(16), True


def _with_device(response, device: str, new: bool):
    if new:
        response.set_cookie(DEVICE_COOKIE, device, max_age=3 * 365 * 86400, httponly=True,
                            samesite="Lax", secure=request.is_secure)
    return response


# -- my trainings ----------------------------------------------------------------------------------

def my_sessions(user, upcoming_only: bool = False, limit: int | None = None, since=None):
    """(session, class, record, leave) for the classes the person is enrolled in."""
    query = (select(TrainingSession, TrainingClass, Record, LeaveRequest)
             .join(TrainingClass, TrainingClass.id == TrainingSession.class_id)
             .join(Enrolment, (Enrolment.class_id == TrainingClass.id) & (Enrolment.user_id == user.id))
             .outerjoin(Record, (Record.session_id == TrainingSession.id) & (Record.user_id == user.id))
             .outerjoin(LeaveRequest, (LeaveRequest.session_id == TrainingSession.id)
                        & (LeaveRequest.user_id == user.id)))
    if upcoming_only:
        query = query.where(TrainingSession.ends_at >= (since or service.now())).order_by(TrainingSession.starts_at)
    else:
        query = query.order_by(TrainingSession.starts_at.desc())
    if limit:
        query = query.limit(limit)
    return db.session.execute(query).all()


class LeaveForm(FlaskForm):
    reason = TextAreaField(_l("请假事由"), validators=[DataRequired(), Length(max=500)])


@bp.get("/")
@login_required
def mine():
    service.close_due_sessions()
    rows = my_sessions(current_user)
    at = service.now()
    upcoming = [r for r in reversed(rows) if r[0].ends_at >= at]
    past = [r for r in rows if r[0].ends_at < at]
    per_class = db.session.execute(
        service.stats_query(TrainingClass.id, TrainingClass.title)
        .join(TrainingClass, TrainingClass.id == Enrolment.class_id)
        .where(Enrolment.user_id == current_user.id)).all()
    return render_template("attendance/mine.html", upcoming=upcoming, past=past,
                           per_class=per_class, rate=service.rate, now=at, form=LeaveForm(),
                           window=service.window)


@bp.post("/sessions/<int:session_id>/leave")
@login_required
def request_leave(session_id):
    session = db.session.get(TrainingSession, session_id)
    if session is None or not service.is_enrolled(session, current_user.id):
        abort(404)
    form = LeaveForm()
    if session.starts_at <= service.now():
        flash(_("培训已经开始，不能再在线请假，请直接联系组织者。"), "error")
    elif not form.validate_on_submit():
        flash(_("请填写请假事由。"), "error")
    else:
        leave = db.session.scalar(select(LeaveRequest).where(
            LeaveRequest.session_id == session.id, LeaveRequest.user_id == current_user.id))
        if leave is not None and leave.state != "pending":
            flash(_("这次请假已经处理过了。"), "error")
        else:
            if leave is None:
                leave = LeaveRequest(session_id=session.id, user_id=current_user.id)
                db.session.add(leave)
            leave.reason, leave.created_at = form.reason.data.strip(), service.now()
            db.session.commit()
            flash(_("请假申请已提交，等待组织者审批。"), "success")
    return redirect(url_for("attendance.mine"))


# -- check-in --------------------------------------------------------------------------------------

def _message(text: str, status: int, session=None, title=None):
    return render_template("attendance/message.html", message=text, session=session,
                           title=title or _("签到"), ok=status < 300), status


_TOKEN_MESSAGES = {
    "expired": _l("二维码已过期，请重新扫描大屏幕上的最新二维码，或输入屏幕上的签到码。"),
    "invalid": _l("二维码无效，请扫描大屏幕上的二维码，或输入屏幕上的签到码。"),
}


@bp.get("/c/<int:session_id>")
@public
def checkin(session_id):
    """The page a scanned QR code opens (public so the scan survives logging in)."""
    session = db.session.get(TrainingSession, session_id)
    device, new = _device()
    if session is None:
        return _with_device(Response(*_message(_("没有找到这次培训。"), 404)), device, new)
    if request.args.get("p"):
        verdict = service.check_pass(session.id, request.args.get("p"))
        pass_value = request.args.get("p")
    else:
        verdict = service.check_token(session.id, request.args.get("t"))
        pass_value = service.make_pass(session.id) if verdict == "ok" else None
    if verdict != "ok":
        return _with_device(Response(*_message(str(_TOKEN_MESSAGES[verdict]), 400)), device, new)
    if not current_user.is_authenticated:
        target = url_for("attendance.checkin", session_id=session.id, p=pass_value)
        return _with_device(redirect(url_for("auth.login", next=target)), device, new)
    if not service.is_enrolled(session, current_user.id):
        return _with_device(Response(*_message(
            _("您不在本次培训的名单中，不能签到。如有疑问请联系组织者。"), 403)), device, new)
    record = db.session.scalar(select(Record).where(Record.session_id == session.id,
                                                    Record.user_id == current_user.id))
    body = render_template("attendance/checkin.html", session=session, pass_value=pass_value,
                           record=record, attended=ATTENDED, form=FlaskForm())
    return _with_device(Response(body), device, new)


@bp.post("/c/<int:session_id>")
@login_required
def checkin_post(session_id):
    session = db.session.get(TrainingSession, session_id)
    if session is None or not service.is_enrolled(session, current_user.id):
        return _message(_("您不在本次培训的名单中，不能签到。如有疑问请联系组织者。"), 404)
    verdict = service.check_pass(session.id, request.form.get("p"))
    if verdict != "ok":
        return _message(str(_TOKEN_MESSAGES[verdict]), 400, session)
    device, new = _device()
    outcome = service.check_in(session, current_user, device, source="qr")
    body, code = _message(outcome.message, 200 if outcome.ok else 409, session,
                          _("签到成功") if outcome.ok else _("未能签到"))
    return _with_device(Response(body, status=code), device, new)


class CodeForm(FlaskForm):
    code = StringField(_l("签到码"), validators=[DataRequired(), Length(max=12)])


@bp.route("/code", methods=["GET", "POST"])
@login_required
def code_checkin():
    """Type the 6-digit code shown on the projector when the camera fails."""
    form = CodeForm()
    if form.validate_on_submit():
        refused = ratelimit.blocked(ratelimit.CHECKIN_CODE, current_user.id)
        if refused is not None:
            flash(_("签到码输错次数过多，请 %(n)s 分钟后再试，或请组织者补录。", n=refused.minutes), "error")
            return render_template("attendance/code.html", form=form), 429
        code = re.sub(r"\s+", "", form.code.data)
        at = service.now()
        recent = at - timedelta(minutes=int(service.cfg("ATTENDANCE_CLOSE_AFTER")))
        candidates = [s for s, *_rest in my_sessions(current_user, upcoming_only=True, since=recent)
                      if service.window(s).state(at) in (PRESENT, LATE)]
        session = next((s for s in candidates if service.check_code(s.id, code)), None)
        if session is None:
            ratelimit.count(ratelimit.CHECKIN_CODE, current_user.id)
            flash(_("签到码不正确或已过期，请核对大屏幕上的最新签到码。"), "error")
            return render_template("attendance/code.html", form=form), 400
        device, new = _device()
        outcome = service.check_in(session, current_user, device, source="code")
        body, status = _message(outcome.message, 200 if outcome.ok else 409, session,
                                _("签到成功") if outcome.ok else _("未能签到"))
        return _with_device(Response(body, status=status), device, new)
    return render_template("attendance/code.html", form=form)


# -- classes -----------------------------------------------------------------------------------------

class ClassForm(FlaskForm):
    title = StringField(_l("培训班名称"), validators=[DataRequired(), Length(max=200)])
    org_unit_id = SelectField(_l("主办单位"), coerce=int)
    description = TextAreaField(_l("说明"), validators=[Optional(), Length(max=2000)])


class SessionForm(FlaskForm):
    title = StringField(_l("课程/专题"), validators=[Optional(), Length(max=200)])
    day = DateField(_l("日期"), validators=[InputRequired()])
    start = TimeField(_l("开始"), validators=[InputRequired()])
    end = TimeField(_l("结束"), validators=[InputRequired()])
    place = StringField(_l("地点"), validators=[Optional(), Length(max=200)])
    hours = FloatField(_l("学时"), default=1.0, validators=[InputRequired(), NumberRange(min=0, max=24)])


@bp.get("/classes")
@organiser_only
def classes():
    service.close_due_sessions()
    query = select(TrainingClass)
    ids = managed_org_ids(current_user)
    if ids is not None:
        query = query.where(TrainingClass.org_unit_id.in_(ids or {-1}))
    items = db.session.scalars(query.order_by(TrainingClass.created_at.desc())).all()
    counts = dict(db.session.execute(
        select(Enrolment.class_id, func.count()).where(Enrolment.class_id.in_([c.id for c in items] or [-1]))
        .group_by(Enrolment.class_id)).all())
    return render_template("attendance/classes.html", classes=items, counts=counts)


@bp.route("/classes/new", methods=["GET", "POST"])
@organiser_only
def class_new():
    form = ClassForm()
    orgs = _organisable_orgs()
    form.org_unit_id.choices = [(o.id, o.name) for o in orgs]
    if form.validate_on_submit():
        klass = TrainingClass(title=form.title.data.strip(), description=form.description.data or "",
                              org_unit_id=form.org_unit_id.data, created_by=current_user.id)
        db.session.add(klass)
        db.session.flush()
        audit.record("attendance.class_create", klass, _l("创建培训班「%(title)s」", title=klass.title))
        db.session.commit()
        flash(_("培训班已创建，请添加场次并报名学员。"), "success")
        return redirect(url_for("attendance.class_detail", class_id=klass.id))
    return render_template("attendance/class_new.html", form=form)


@bp.get("/classes/<int:class_id>")
@organiser_only
def class_detail(class_id):
    klass = get_class_or_404(class_id)
    service.close_due_sessions(class_id=klass.id)
    enrolled = db.session.scalar(select(func.count()).select_from(Enrolment)
                                 .where(Enrolment.class_id == klass.id))
    per_session = dict(db.session.execute(
        select(Record.session_id, func.count()).join(TrainingSession, TrainingSession.id == Record.session_id)
        .where(TrainingSession.class_id == klass.id, Record.status.in_(ATTENDED))
        .group_by(Record.session_id)).all())
    return render_template("attendance/class.html", klass=klass, enrolled=enrolled,
                           per_session=per_session, form=SessionForm(), delete_form=FlaskForm())


@bp.post("/classes/<int:class_id>/sessions")
@organiser_only
def session_add(class_id):
    klass = get_class_or_404(class_id)
    form = SessionForm()
    if form.validate_on_submit():
        starts = service.from_local(form.day.data, form.start.data)
        ends = service.from_local(form.day.data, form.end.data)
        if ends <= starts:
            flash(_("结束时间必须晚于开始时间。"), "error")
        else:
            session = TrainingSession(class_id=klass.id, title=(form.title.data or "").strip(),
                                      starts_at=starts, ends_at=ends, place=(form.place.data or "").strip(),
                                      hours=float(form.hours.data))
            db.session.add(session)
            db.session.flush()
            audit.record("attendance.session_create", session, _l("「%(title)s」新增场次", title=klass.title))
            db.session.commit()
            flash(_("场次已添加。"), "success")
    else:
        flash(_("请填写日期、开始和结束时间以及学时。"), "error")
    return redirect(url_for("attendance.class_detail", class_id=klass.id))


@bp.route("/sessions/<int:session_id>/edit", methods=["GET", "POST"])
@organiser_only
def session_edit(session_id):
    session = get_session_or_404(session_id)
    form = SessionForm()
    if request.method == "GET":
        starts, ends = service.to_local(session.starts_at), service.to_local(session.ends_at)
        form.title.data, form.place.data, form.hours.data = session.title, session.place, session.hours
        form.day.data, form.start.data, form.end.data = starts.date(), starts.time(), ends.time()
    elif form.validate_on_submit():
        starts = service.from_local(form.day.data, form.start.data)
        ends = service.from_local(form.day.data, form.end.data)
        if ends <= starts:
            flash(_("结束时间必须晚于开始时间。"), "error")
        elif session.closed_at is not None and (starts, ends) != (session.starts_at, session.ends_at):
            flash(_("这个场次已经结束并统计了缺席，不能再改时间；可以修改内容、地点和学时。"), "error")
        else:
            session.title, session.place = (form.title.data or "").strip(), (form.place.data or "").strip()
            session.hours, session.starts_at, session.ends_at = float(form.hours.data), starts, ends
            audit.record("attendance.session_edit", session, _l("修改「%(title)s」的场次", title=session.klass.title))
            db.session.commit()
            flash(_("场次已保存。"), "success")
            return redirect(url_for("attendance.class_detail", class_id=session.class_id))
    return render_template("attendance/session_edit.html", session=session, klass=session.klass, form=form)


@bp.post("/sessions/<int:session_id>/delete")
@organiser_only
def session_delete(session_id):
    session = get_session_or_404(session_id)
    class_id = session.class_id
    has_records = db.session.scalar(select(Record.id).where(Record.session_id == session.id).limit(1))
    if request.form.get("confirm") != "1":
        flash(_("请确认删除。"), "error")
    elif has_records is not None:
        flash(_("这个场次已有签到记录，不能删除。"), "error")
    else:
        db.session.execute(LeaveRequest.__table__.delete().where(LeaveRequest.session_id == session.id))
        db.session.execute(MarkLog.__table__.delete().where(MarkLog.session_id == session.id))
        audit.record("attendance.session_delete", session, _l("删除「%(title)s」的一个场次", title=session.klass.title))
        db.session.delete(session)
        db.session.commit()
        flash(_("场次已删除。"), "success")
    return redirect(url_for("attendance.class_detail", class_id=class_id))


# -- enrolment ---------------------------------------------------------------------------------------

class ImportForm(FlaskForm):
    file = FileField(_l("名单文件（.xlsx 或 .csv）"), validators=[FileRequired()])


def _filtered_candidates(klass, args):
    query = _candidates(klass)
    enrolled = select(Enrolment.user_id).where(Enrolment.class_id == klass.id)
    query = query.where(User.id.not_in(enrolled))
    org = args.get("org", "")
    if org.isdigit():
        query = query.where(User.org_unit_id == int(org))
    role = args.get("role", "")
    if role in ROLE_LABELS:
        query = query.where(User.role == role)
    q = args.get("q", "").strip()[:64]
    if q:
        like = f"%{q}%"
        query = query.where(or_(User.name.like(like), User.phone.like(like), User.deputy_card_no.like(like)))
    return query


def _enrol(klass, user_ids) -> int:
    allowed = set(db.session.scalars(_candidates(klass).with_only_columns(User.id)
                                     .where(User.id.in_(list(user_ids) or [-1]))))
    existing = set(db.session.scalars(select(Enrolment.user_id).where(
        Enrolment.class_id == klass.id, Enrolment.user_id.in_(list(allowed) or [-1]))))
    new = sorted(allowed - existing)
    db.session.add_all([Enrolment(class_id=klass.id, user_id=uid) for uid in new])
    return len(new)


@bp.route("/classes/<int:class_id>/enrol", methods=["GET", "POST"])
@organiser_only
def enrol(class_id):
    klass = get_class_or_404(class_id)
    form = FlaskForm()
    if request.method == "POST" and form.validate_on_submit():
        action = request.form.get("action")
        if action == "all":
            ids = db.session.scalars(_filtered_candidates(klass, request.form).with_only_columns(User.id)).all()
            n = _enrol(klass, ids)
        elif action == "pick":
            ids = [int(v) for v in request.form.getlist("user_id") if v.isdigit()]
            n = _enrol(klass, ids)
        elif action == "remove":
            ids = [int(v) for v in request.form.getlist("user_id") if v.isdigit()]
            marked = set(db.session.scalars(select(Record.user_id).join(
                TrainingSession, TrainingSession.id == Record.session_id).where(
                TrainingSession.class_id == klass.id, Record.user_id.in_(ids or [-1]))))
            removable = [i for i in ids if i not in marked]
            if removable:
                db.session.execute(Enrolment.__table__.delete().where(
                    Enrolment.class_id == klass.id, Enrolment.user_id.in_(removable)))
            audit.record("attendance.unenrol", klass, _l("从「%(title)s」移出 %(n)s 人", title=klass.title,
                                                         n=len(removable)))
            db.session.commit()
            if marked:
                flash(_("%(n)s 人已有考勤记录，未移出。", n=len(marked)), "error")
            flash(_("已移出 %(n)s 人。", n=len(removable)), "success")
            return redirect(url_for("attendance.enrol", class_id=klass.id))
        else:
            flash(_("请选择操作。"), "error")
            return redirect(url_for("attendance.enrol", class_id=klass.id))
        audit.record("attendance.enrol", klass, _l("向「%(title)s」报名 %(n)s 人", title=klass.title, n=n))
        db.session.commit()
        flash(_("已报名 %(n)s 人。", n=n), "success")
        return redirect(url_for("attendance.enrol", class_id=klass.id))
    args = request.args
    candidates = db.session.scalars(_filtered_candidates(klass, args)
                                    .order_by(User.org_unit_id, User.name).limit(MAX_PICK)).all()
    total = db.session.scalar(select(func.count()).select_from(_filtered_candidates(klass, args).subquery()))
    enrolled = db.session.execute(
        select(User, OrgUnit.name).join(Enrolment, Enrolment.user_id == User.id)
        .outerjoin(OrgUnit, OrgUnit.id == User.org_unit_id)
        .where(Enrolment.class_id == klass.id).order_by(OrgUnit.name, User.name)).all()
    orgs = [o for o in db.session.scalars(scoped_orgs(current_user).where(
        OrgUnit.path.startswith(klass.org_unit.path), OrgUnit.kind == "township")
        .order_by(OrgUnit.path))]
    org_names = {o.id: o.name for o in orgs}
    return render_template("attendance/enrol.html", klass=klass, form=form, candidates=candidates,
                           total=total, enrolled=enrolled, orgs=orgs, org_names=org_names,
                           roles=ROLE_LABELS, args=args, max_pick=MAX_PICK, import_form=ImportForm())


@bp.post("/classes/<int:class_id>/import")
@organiser_only
def enrol_import(class_id):
    """Read a roster file and preview whom it names; the confirm button enrols them."""
    from kb.people import roster

    klass = get_class_or_404(class_id)
    form = ImportForm()
    if not form.validate_on_submit():
        flash(_("请选择名单文件（.xlsx 或 .csv）。"), "error")
        return redirect(url_for("attendance.enrol", class_id=klass.id))
    refused = ratelimit.take(ratelimit.UPLOAD, current_user.id)
    if refused is not None:
        flash(ratelimit.message(refused), "error")
        return redirect(url_for("attendance.enrol", class_id=klass.id))
    upload = form.file.data
    _headers, rows, file_errors = roster.read_table(upload.filename or "", upload.read(),
                                                    require_org=False)
    phones, cards = set(), set()
    for _n, raw in rows:
        phones.add(roster.normalize_phone(raw.get("phone")))
        cards.add(roster.normalize_card(raw.get("deputy_card_no")).upper())
    phones.discard("")
    cards.discard("")
    people = db.session.scalars(_candidates(klass).where(
        or_(User.phone.in_(sorted(phones) or ["-"]), func.upper(User.deputy_card_no).in_(sorted(cards) or ["-"])))).all()
    by_phone = {u.phone: u for u in people if u.phone}
    by_card = {u.deputy_card_no.upper(): u for u in people if u.deputy_card_no}
    enrolled = set(db.session.scalars(select(Enrolment.user_id).where(Enrolment.class_id == klass.id)))
    matched, already, problems, seen = [], [], [], set()
    for number, raw in rows:
        name = roster.normalize_name(raw.get("name"))
        phone = roster.normalize_phone(raw.get("phone"))
        card = roster.normalize_card(raw.get("deputy_card_no")).upper()
        user = by_phone.get(phone) or by_card.get(card)
        if user is None:
            why = _("手机号和代表证号都没有找到对应的人员（或不在您的管理范围内）") if (phone or card) \
                else _("缺少手机号或代表证号")
            problems.append((number, name, why))
        elif user.id in seen:
            continue
        elif user.id in enrolled:
            seen.add(user.id)
            already.append((number, user))
        else:
            seen.add(user.id)
            note = "" if not name or name == user.name else _("表中姓名为「%(n)s」", n=name)
            matched.append((number, user, note))
    return render_template("attendance/import_preview.html", klass=klass, matched=matched,
                           already=already, problems=problems, file_errors=file_errors,
                           filename=upload.filename, form=FlaskForm())


# -- a session -----------------------------------------------------------------------------------------

@bp.get("/sessions/<int:session_id>")
@organiser_only
def session_detail(session_id):
    session = get_session_or_404(session_id)
    service.close_due_sessions(session_id=session.id)
    leaves = db.session.execute(
        select(LeaveRequest, User).join(User, User.id == LeaveRequest.user_id)
        .where(LeaveRequest.session_id == session.id).order_by(LeaveRequest.created_at)).all()
    actor = aliased(User)
    log = db.session.execute(
        select(MarkLog, User.name, actor.name).join(User, User.id == MarkLog.user_id)
        .outerjoin(actor, actor.id == MarkLog.actor_id)
        .where(MarkLog.session_id == session.id, MarkLog.note != service.AUTO_NOTE)
        .order_by(MarkLog.id.desc()).limit(100)).all()
    return render_template("attendance/session.html", session=session, klass=session.klass,
                           counts=service.session_counts(session), rows=service.session_rows(session),
                           leaves=leaves, statuses=STATUSES, form=FlaskForm(), log=log,
                           window=service.window(session))


@bp.post("/sessions/<int:session_id>/mark")
@organiser_only
def session_mark(session_id):
    session = get_session_or_404(session_id)
    enrolled = set(db.session.scalars(select(Enrolment.user_id).where(Enrolment.class_id == session.class_id)))
    wanted: dict[int, str] = {}
    for uid in enrolled:
        value = request.form.get(f"status_{uid}", "")
        if value in STATUSES:
            wanted[uid] = value
    bulk = request.form.get("bulk_status", "")
    if bulk in STATUSES:
        for v in request.form.getlist("pick"):
            if v.isdigit() and int(v) in enrolled:
                wanted[int(v)] = bulk
    changed: dict[str, list[int]] = {}
    for uid, status in wanted.items():
        if service.set_status(session, uid, status, current_user.id, note=service.ORGANISER_NOTE):
            changed.setdefault(status, []).append(uid)
    n = sum(len(v) for v in changed.values())
    if n:
        audit.record("attendance.mark", session, _l("标记 %(n)s 人的考勤", n=n))
    for status, uids in changed.items():
        service.emit_marked(session, uids, status)
    db.session.commit()
    flash(_("已更新 %(n)s 人的考勤。", n=n), "success")
    return redirect(url_for("attendance.session_detail", session_id=session.id))


@bp.post("/leaves/<int:leave_id>/decide")
@organiser_only
def leave_decide(leave_id):
    leave = db.session.get(LeaveRequest, leave_id)
    if leave is None or not _manages(leave.session.klass):
        abort(404)
    decision = request.form.get("decision")
    if decision not in ("approve", "refuse"):
        flash(_("请选择批准或不批准。"), "error")
    else:
        service.decide_leave(leave, decision == "approve", current_user.id)
        summary = (_l("批准请假：%(name)s", name=leave.user.name) if decision == "approve"
                   else _l("不批准请假：%(name)s", name=leave.user.name))
        audit.record("attendance.leave_" + decision, leave.session, summary)
        db.session.commit()
        flash(_("已处理请假申请。"), "success")
    return redirect(url_for("attendance.session_detail", session_id=leave.session_id))


@bp.get("/sessions/<int:session_id>/projector")
@organiser_only
def projector(session_id):
    session = get_session_or_404(session_id)
    return render_template("attendance/projector.html", session=session, klass=session.klass,
                           qr=_qr_payload(session), counts=service.session_counts(session))


def _qr_payload(session) -> dict:
    import segno

    token = service.make_token(session.id)
    url = url_for("attendance.checkin", session_id=session.id, t=token, _external=True)
    svg = segno.make(url, error="m").svg_inline(scale=8, border=2, omitsize=True,
                                                svgclass="att-qr-svg", title=_("签到二维码"))
    state = service.window(session).state(service.now())
    return {"url": url, "svg": svg, "code": service.make_code(session.id),
            "refresh_in": service.seconds_left(), "state": state,
            "code_url": url_for("attendance.code_checkin", _external=True)}


@bp.get("/sessions/<int:session_id>/qr.json")
@organiser_only
def projector_json(session_id):
    session = get_session_or_404(session_id)
    payload = _qr_payload(session)
    payload["count"] = service.session_counts(session)["in"]
    response = jsonify(payload)
    response.headers["Cache-Control"] = "no-store"
    return response


def _live_data(session) -> dict:
    rows = service.session_rows(session)
    present = [{"name": u.name, "org": org or "", "status": service.status_name(r.status),
                "at": att_local(r.checked_in_at, "%H:%M") if r.checked_in_at else ""}
               for u, org, r in rows if r is not None and r.status in ATTENDED]
    missing = [{"name": u.name, "org": org or "",
                "status": service.status_name(r.status) if r is not None else service.status_name(None)}
               for u, org, r in rows if r is None or r.status not in ATTENDED]
    present.sort(key=lambda p: p["at"], reverse=True)
    return {"count": len(present), "enrolled": len(rows), "present": present, "missing": missing}


@bp.get("/sessions/<int:session_id>/live")
@organiser_only
def live(session_id):
    session = get_session_or_404(session_id)
    service.close_due_sessions(session_id=session.id)
    return render_template("attendance/live.html", session=session, klass=session.klass,
                           data=_live_data(session))


@bp.get("/sessions/<int:session_id>/live.json")
@organiser_only
def live_json(session_id):
    session = get_session_or_404(session_id)
    service.close_due_sessions(session_id=session.id)
    response = jsonify(_live_data(session))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/sessions/<int:session_id>/sheet")
@organiser_only
def sheet(session_id):
    session = get_session_or_404(session_id)
    rows = [(u, org, service.paper_code(session.id, u.id)) for u, org, _r in service.session_rows(session)]
    return render_template("attendance/sheet.html", session=session, klass=session.klass, rows=rows)


class PaperForm(FlaskForm):
    codes = TextAreaField(_l("签到码（每行一个，或用空格、逗号分隔）"), validators=[DataRequired(), Length(max=20000)])
    status = SelectField(_l("标记为"), choices=[(PRESENT, PRESENT), (LATE, LATE)])


@bp.route("/sessions/<int:session_id>/paper", methods=["GET", "POST"])
@organiser_only
def paper(session_id):
    """Enter the codes ticked on the paper sheet after a session without network."""
    session = get_session_or_404(session_id)
    form = PaperForm()
    form.status.choices = [(PRESENT, service.status_name(PRESENT)), (LATE, service.status_name(LATE))]
    result = None
    if form.validate_on_submit():
        codes = [c for c in re.split(r"[\s,，、;；]+", form.codes.data) if c]
        by_code: dict[str, list[int]] = {}
        people = {}
        for u, _org, _r in service.session_rows(session):
            by_code.setdefault(service.paper_code(session.id, u.id), []).append(u.id)
            people[u.id] = u
        marked, unknown, ambiguous = [], [], []
        for code in codes:
            ids = by_code.get(code, [])
            if not ids:
                unknown.append(code)
            elif len(ids) > 1:
                ambiguous.append(code)
            else:
                marked.append(ids[0])
        changed = [uid for uid in dict.fromkeys(marked)
                   if service.set_status(session, uid, form.status.data, current_user.id,
                                         source="paper", note=service.PAPER_NOTE)]
        if changed:
            audit.record("attendance.paper", session, _l("录入纸质签到 %(n)s 人", n=len(changed)))
        service.emit_marked(session, changed, form.status.data)
        db.session.commit()
        result = {"marked": [people[u].name for u in dict.fromkeys(marked)], "unknown": unknown,
                  "ambiguous": ambiguous, "changed": len(changed)}
    return render_template("attendance/paper.html", session=session, klass=session.klass,
                           form=form, result=result)


# -- reports and exports ---------------------------------------------------------------------------------

def _table_response(name: str, fmt: str, header: list[str], rows: list[list]) -> Response:
    from kb.exports import csv_bytes, xlsx_bytes

    if fmt == "csv":
        body, mime = csv_bytes(header, rows), "text/csv; charset=utf-8"
    elif fmt == "xlsx":
        body, mime = xlsx_bytes(_("考勤"), header, rows), \
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        abort(404)
    stamp = service.to_local(service.now()).strftime("%Y%m%d")
    return Response(body, mimetype=mime, headers={
        "Content-Disposition": f"attachment; filename=attendance-{stamp}.{fmt}; "
                               f"filename*=UTF-8''{quote(f'{name}-{stamp}.{fmt}')}"})


def _pct_text(value):
    return "" if value is None else f"{value * 100:.1f}%"


@bp.get("/sessions/<int:session_id>/export.<fmt>")
@organiser_only
def session_export(session_id, fmt):
    session = get_session_or_404(session_id)
    service.close_due_sessions(session_id=session.id)
    rows = [[u.name, org or "", service.status_name(r.status if r else None),
             att_local(r.checked_in_at) if r and r.checked_in_at else "",
             str(SOURCE_LABELS.get(r.source, r.source)) if r else ""]
            for u, org, r in service.session_rows(session)]
    return _table_response(_("场次考勤"), fmt, [_("姓名"), _("单位"), _("状态"), _("签到时间"), _("方式")], rows)


def _class_stats(klass):
    return db.session.execute(
        service.stats_query(User.id, User.name, OrgUnit.name.label("org"))
        .outerjoin(OrgUnit, OrgUnit.id == User.org_unit_id)
        .where(Enrolment.class_id == klass.id).order_by(OrgUnit.name, User.name)).all()


@bp.get("/classes/<int:class_id>/report")
@organiser_only
def class_report(class_id):
    klass = get_class_or_404(class_id)
    service.close_due_sessions(class_id=klass.id)
    rows = _class_stats(klass)
    total = db.session.execute(service.stats_query(Enrolment.class_id)
                               .where(Enrolment.class_id == klass.id)).first()
    return render_template("attendance/class_report.html", klass=klass, rows=rows, total=total,
                           rate=service.rate)


@bp.get("/classes/<int:class_id>/report.<fmt>")
@organiser_only
def class_export(class_id, fmt):
    klass = get_class_or_404(class_id)
    service.close_due_sessions(class_id=klass.id)
    rows = [[r.name, r.org or "", r.expected, r.present, r.late, r.leave, r.absent,
             _pct_text(service.rate(r))] for r in _class_stats(klass)]
    return _table_response(_("培训班考勤"), fmt,
                           [_("姓名"), _("单位"), _("应到场次"), service.status_name(PRESENT),
                            service.status_name(LATE), service.status_name(LEAVE), service.status_name("absent"),
                            _("出勤率")], rows)


def _year() -> int:
    raw = request.args.get("year", "")
    return int(raw) if raw.isdigit() and 2000 <= int(raw) <= 2100 else service.to_local(service.now()).year


def _township_stats(year: int):
    start, end = service.year_bounds(year)
    ids = _township_ids()
    return db.session.execute(
        service.stats_query(OrgUnit.id, OrgUnit.name)
        .join(OrgUnit, OrgUnit.id == User.org_unit_id)
        .where(OrgUnit.id.in_(ids or [-1]), TrainingSession.starts_at >= start,
               TrainingSession.starts_at < end)
        .order_by(OrgUnit.name)).all()


@bp.get("/report")
@organiser_only
def report():
    service.close_due_sessions()
    year = _year()
    return render_template("attendance/report.html", rows=_township_stats(year), year=year,
                           rate=service.rate)


@bp.get("/report.<fmt>")
@organiser_only
def report_export(fmt):
    service.close_due_sessions()
    year = _year()
    rows = [[r.name, r.expected, r.present, r.late, r.leave, r.absent, _pct_text(service.rate(r))]
            for r in _township_stats(year)]
    return _table_response(_("乡镇考勤-%(year)s", year=year), fmt,
                           [_("乡镇"), _("应到人次"), service.status_name(PRESENT), service.status_name(LATE),
                            service.status_name(LEAVE), service.status_name("absent"), _("出勤率")], rows)


def _people_stats(org_id: int, year: int):
    start, end = service.year_bounds(year)
    return db.session.execute(
        service.stats_query(User.id, User.name)
        .where(User.org_unit_id == org_id, TrainingSession.starts_at >= start,
               TrainingSession.starts_at < end)
        .order_by(User.name, User.id)).all()


@bp.get("/report/org/<int:org_id>")
@organiser_only
def report_org(org_id):
    """Per person of one township for a year."""
    org = get_org_or_404(org_id)
    service.close_due_sessions()
    year = _year()
    return render_template("attendance/report_org.html", org=org, rows=_people_stats(org.id, year),
                           year=year, rate=service.rate)


@bp.get("/report/org/<int:org_id>.<fmt>")
@organiser_only
def report_org_export(org_id, fmt):
    org = get_org_or_404(org_id)
    service.close_due_sessions()
    year = _year()
    rows = [[r.name, r.expected, r.present, r.late, r.leave, r.absent, _pct_text(service.rate(r))]
            for r in _people_stats(org.id, year)]
    return _table_response(_("%(org)s考勤-%(year)s", org=org.name, year=year), fmt,
                           [_("姓名"), _("应到场次"), service.status_name(PRESENT), service.status_name(LATE),
                            service.status_name(LEAVE), service.status_name("absent"), _("出勤率")], rows)


@bp.get("/people/<int:user_id>")
@organiser_only
def person_report(user_id):
    person = get_user_or_404(user_id)
    service.close_due_sessions()
    per_class = db.session.execute(
        service.stats_query(TrainingClass.id, TrainingClass.title)
        .join(TrainingClass, TrainingClass.id == Enrolment.class_id)
        .where(Enrolment.user_id == person.id)).all()
    sessions = my_sessions(person)
    return render_template("attendance/person.html", person=person, per_class=per_class,
                           sessions=sessions, rate=service.rate)


def dashboard_card_html(user) -> Markup | None:
    rows = my_sessions(user, upcoming_only=True, limit=3)
    if not rows:
        return None
    return Markup(render_template("attendance/card.html", rows=rows))
