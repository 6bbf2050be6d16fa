"""Administration of people and organisations (county staff within their county, admins)."""

from __future__ import annotations

import secrets

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import func, or_, select
from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from .. import audit, ratelimit
from ..authz import (
    ASSIGNABLE_ROLES,
    STAFF_ROLES,
    can_manage_org,
    get_org_or_404,
    get_user_or_404,
    roles_required,
    scoped_orgs,
    scoped_users,
)
from ..extensions import db
from ..i18n import parens
from ..models import ORG_KINDS, AuditLog, ImportBatch, OrgUnit, User, add_org_unit, utcnow

bp = Blueprint("people", __name__, url_prefix="/admin")

ROLE_LABELS = {
    "deputy": _l("人大代表"), "presidium": _l("主席团成员"), "chair": _l("人大主席/副主席"),
    "secretary": _l("人大秘书"), "county_staff": _l("县人大常委会工作人员"), "admin": _l("系统管理员"),
}
KIND_LABELS = {"province": _l("省"), "city": _l("市"), "county": _l("县（区）"), "township": _l("乡镇（街道）")}
PER_PAGE = 50
staff_only = roles_required(*sorted(STAFF_ROLES))


@bp.app_template_filter("role_label")
def role_label(role: str) -> str:
    return str(ROLE_LABELS.get(role, role))


def org_label(org: OrgUnit | None) -> str:
    return "" if org is None else org.name


def org_choices(kinds=("township", "county", "city", "province")) -> list[tuple[str, str]]:
    orgs = db.session.scalars(scoped_orgs(current_user).where(OrgUnit.kind.in_(kinds))
                              .order_by(OrgUnit.path)).all()
    return [(str(o.id), o.name + parens(KIND_LABELS[o.kind] if o.is_active
                                        else _("%(kind)s，已停用", kind=KIND_LABELS[o.kind])))
            for o in orgs]


# -- people ---------------------------------------------------------------------------------

def _filtered_users():
    query = scoped_users(current_user)
    q = request.args.get("q", "").strip()[:64]
    if q:
        like = f"%{q}%"
        query = query.where(or_(User.name.like(like), User.username.like(like), User.phone.like(like),
                                User.deputy_card_no.like(like)))
    org = request.args.get("org", type=int)
    if org:
        query = query.where(User.org_unit_id == org)
    role = request.args.get("role", "")
    if role in ROLE_LABELS:
        query = query.where(User.role == role)
    active = request.args.get("active", "1")
    if active in ("0", "1"):
        query = query.where(User.active.is_(active == "1"))
    return query


@bp.get("/")
@staff_only
def index():
    return redirect(url_for("people.users"))


@bp.get("/users")
@staff_only
def users():
    query = _filtered_users()
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = max(1, request.args.get("page", 1, type=int))
    rows = db.session.scalars(query.order_by(User.org_unit_id, User.role, User.name)
                              .limit(PER_PAGE).offset((page - 1) * PER_PAGE)).all()
    orgs = {o.id: o for o in db.session.scalars(scoped_orgs(current_user))}
    return render_template("people/users.html", users=rows, total=total, page=page,
                           pages=max(1, -(-total // PER_PAGE)), orgs=orgs,
                           org_choices=org_choices(), roles=ROLE_LABELS,
                           args=request.args.to_dict())


def _normalize_phone(value):
    """Store phones as the roster import matches them (no spaces, dashes or +86)."""
    from .roster import normalize_phone

    return normalize_phone(value) if value else value


def _normalize_card(value):
    from .roster import normalize_card

    return normalize_card(value) if value else value


class UserForm(FlaskForm):
    name = StringField(_l("姓名"), validators=[DataRequired(), Length(max=64)])
    username = StringField(_l("用户名"), validators=[DataRequired(), Length(min=2, max=64),
                           Regexp(r"^[A-Za-z0-9_.@-]+$", message=_l("用户名只能用字母、数字和 _ . @ -"))])
    phone = StringField(_l("手机号"), filters=[lambda v: _normalize_phone(v)],
                        validators=[Optional(), Regexp(r"^1[3-9]\d{9}$", message=_l("请输入 11 位手机号"))])
    role = SelectField(_l("角色"))
    org_unit_id = SelectField(_l("所在单位"))
    deputy_card_no = StringField(_l("代表证号"), filters=[lambda v: _normalize_card(v)],
                                 validators=[Optional(), Length(max=32)])
    gender = SelectField(_l("性别"), choices=[("", "—"), ("男", _l("男")), ("女", _l("女"))],
                         validate_choice=False)
    ethnicity = StringField(_l("民族"), validators=[Optional(), Length(max=16)])
    active = BooleanField(_l("账号有效"), default=True)

    def setup(self):
        self.role.choices = [(r, str(ROLE_LABELS[r])) for r in ASSIGNABLE_ROLES[current_user.role]]
        self.org_unit_id.choices = org_choices()


def _unique_problem(form: UserForm, user: User | None) -> bool:
    for field, column in ((form.username, User.username), (form.phone, User.phone),
                          (form.deputy_card_no, User.deputy_card_no)):
        value = (field.data or "").strip() or None
        if value is None:
            continue
        other = db.session.scalar(select(User).where(column == value))
        if other is not None and (user is None or other.id != user.id):
            field.errors.append(_("已被其他账号使用。"))
            return True
    return False


def _apply(form: UserForm, user: User) -> dict:
    changes = {}
    for field in ("name", "username", "phone", "role", "deputy_card_no", "gender", "ethnicity", "active"):
        value = getattr(form, field).data
        if isinstance(value, str):
            value = value.strip() or (None if field in ("phone", "deputy_card_no") else "")
        if getattr(user, field) != value:
            changes[field] = [getattr(user, field), value]
            setattr(user, field, value)
    org_id = int(form.org_unit_id.data)
    if user.org_unit_id != org_id:
        changes["org_unit_id"] = [user.org_unit_id, org_id]
        user.org_unit_id = org_id
    return changes


@bp.route("/users/new", methods=["GET", "POST"])
@staff_only
def user_new():
    form = UserForm()
    form.setup()
    if form.validate_on_submit() and not _unique_problem(form, None):
        user = User(active=True)
        _apply(form, user)
        code = user.issue_one_time_code(days=30)
        db.session.add(user)
        db.session.flush()
        audit.record("user.create", user, _l("新建账号 %(username)s（%(name)s）", username=user.username,
                                             name=user.name), role=user.role)
        db.session.commit()
        return render_template("people/code.html", user=user, code=code, created=True)
    return render_template("people/user_form.html", form=form, user=None)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@staff_only
def user_edit(user_id):
    user = get_user_or_404(user_id, edit=True)
    form = UserForm(obj=user)
    form.setup()
    if request.method == "GET":
        form.org_unit_id.data = str(user.org_unit_id)
    if user.id == current_user.id:
        form.role.choices = [(user.role, str(ROLE_LABELS[user.role]))]  # no self-promotion/demotion
    if form.validate_on_submit() and not _unique_problem(form, user):
        if user.id == current_user.id and not form.active.data:
            form.active.errors.append(_("不能停用自己的账号。"))
        else:
            changes = _apply(form, user)
            if changes:
                action = "user.deactivate" if changes.get("active") == [True, False] else "user.update"
                audit.record(action, user, _l("修改账号 %(username)s", username=user.username),
                             changes={k: [str(a), str(b)] for k, (a, b) in changes.items()})
                db.session.commit()
                flash(_("已保存。"), "info")
            return redirect(url_for("people.user_edit", user_id=user.id))
    recent = db.session.scalars(select(AuditLog).where(AuditLog.target_type == "user",
                                                       AuditLog.target_id == user.id)
                                .order_by(AuditLog.id.desc()).limit(10)).all()
    return render_template("people/user_form.html", form=form, user=user, recent=recent)


@bp.post("/users/<int:user_id>/reset")
@staff_only
def user_reset(user_id):
    user = get_user_or_404(user_id, edit=True)
    if user.id == current_user.id:
        abort(400)
    code = user.issue_one_time_code(days=7)
    audit.record("user.reset_password", user,
                 _l("重置 %(username)s 的密码，发放一次性登录码", username=user.username))
    db.session.commit()
    return render_template("people/code.html", user=user, code=code, created=False)


# -- roster import / export -------------------------------------------------------------------

class ImportForm(FlaskForm):
    file = FileField(_l("花名册文件（.xlsx 或 .csv）"), validators=[FileRequired()])


@bp.route("/users/import", methods=["GET", "POST"])
@staff_only
def user_import():
    from . import roster

    form = ImportForm()
    if form.validate_on_submit():
        refused = ratelimit.take(ratelimit.UPLOAD, current_user.id)
        if refused is not None:
            flash(ratelimit.message(refused), "error")
            return render_template("people/import.html", form=form), 429
        upload = form.file.data
        data = upload.read()  # bounded by MAX_CONTENT_LENGTH; the roster reports the real size
        preview = roster.build_preview(upload.filename or "upload", data, current_user)
        batch = ImportBatch(token=secrets.token_urlsafe(24), actor_id=current_user.id,
                            filename=(upload.filename or "")[:255], payload=preview.to_payload())
        db.session.add(batch)
        db.session.commit()
        return redirect(url_for("people.user_import_preview", token=batch.token))
    return render_template("people/import.html", form=form)


def _batch_or_404(token: str) -> ImportBatch:
    batch = db.session.scalar(select(ImportBatch).where(ImportBatch.token == token))
    if batch is None or batch.actor_id != current_user.id:
        abort(404)
    return batch


@bp.get("/users/import/<token>")
@staff_only
def user_import_preview(token):
    from . import roster

    batch = _batch_or_404(token)
    preview = roster.Preview.from_payload(batch.payload)
    return render_template("people/import_preview.html", batch=batch, preview=preview,
                           committed=batch.committed_at is not None, form=FlaskForm(),
                           field_labels=roster.COLUMN_LABELS)


@bp.post("/users/import/<token>")
@staff_only
def user_import_commit(token):
    from . import roster

    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    batch = _batch_or_404(token)
    if batch.committed_at is not None:  # a double submit commits once
        flash(_("这个文件已经导入过了。"), "info")
        return redirect(url_for("people.users"))
    preview = roster.Preview.from_payload(batch.payload)
    try:
        result = roster.commit(preview, current_user)
    except roster.RosterError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("people.user_import_preview", token=token))
    batch = _batch_or_404(token)
    batch.committed_at = utcnow()
    audit.record("user.import", None, _l("导入花名册 %(filename)s：新建 %(created)s，更新 %(updated)s，未变 %(unchanged)s",
                                         filename=batch.filename, created=len(result.created),
                                         updated=result.updated, unchanged=result.unchanged),
                 filename=batch.filename, created=len(result.created), updated=result.updated)
    db.session.commit()
    return render_template("people/import_done.html", result=result, batch=batch)


@bp.get("/users/export.<fmt>")
@staff_only
def user_export(fmt):
    from . import roster

    if fmt not in ("xlsx", "csv"):
        abort(404)
    users = db.session.scalars(_filtered_users().order_by(User.org_unit_id, User.name)).all()
    rows = roster.export_rows(users)
    stamp = utcnow().strftime("%Y%m%d")
    if fmt == "csv":
        body, mime = roster.to_csv(rows), "text/csv; charset=utf-8"
    else:
        body, mime = roster.to_xlsx(rows), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    from urllib.parse import quote

    name = f"{_('花名册')}-{stamp}.{fmt}"
    return Response(body, mimetype=mime, headers={
        "Content-Disposition": f"attachment; filename=roster-{stamp}.{fmt}; filename*=UTF-8''{quote(name)}"})


@bp.get("/users/template.csv")
@staff_only
def user_template():
    from . import roster

    # An example row: the name, township and ethnicity are sample data (Chinese, like the real
    # rosters); the role and gender are written as an export in the reader's language writes them.
    sample = [{"name": "张三", "phone": "13800000000", "org": "青山镇", "role": str(roster.ROLE_LABELS["deputy"]),
               "deputy_card_no": "", "gender": str(roster.GENDER_LABELS["男"]), "ethnicity": "汉族"}]
    return Response(roster.to_csv(sample), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=roster-template.csv"})


# -- organisations ----------------------------------------------------------------------------

class OrgForm(FlaskForm):
    name = StringField(_l("名称"), validators=[DataRequired(), Length(max=100)])
    code = StringField(_l("代码（可选）"), validators=[Optional(), Length(max=32)])
    kind = SelectField(_l("层级"), choices=[])  # labels set per request, in the reader's language
    parent_id = SelectField(_l("上级单位"), validate_choice=False)


@bp.route("/orgs", methods=["GET", "POST"])
@staff_only
def orgs():
    form = OrgForm()
    form.kind.choices = [(k, str(v)) for k, v in KIND_LABELS.items()]
    form.parent_id.choices = org_choices(("county", "city", "province"))
    if current_user.role == "admin":
        form.parent_id.choices = [("", _("（无：顶级单位）"))] + form.parent_id.choices
    if form.validate_on_submit():
        parent = db.session.get(OrgUnit, int(form.parent_id.data)) if form.parent_id.data else None
        error = _org_problem(form.kind.data, (form.code.data or "").strip() or None, parent, None)
        if error:
            flash(error, "error")
        else:
            org = add_org_unit(form.kind.data, form.name.data.strip(), parent,
                               (form.code.data or "").strip() or None)
            audit.record("org.create", org, _l("新建单位 %(name)s", name=org.name), kind=org.kind)
            db.session.commit()
            flash(_("已新建单位：%(name)s", name=org.name), "info")
            return redirect(url_for("people.orgs"))
    units = db.session.scalars(scoped_orgs(current_user).order_by(OrgUnit.path)).all()
    counts = dict(db.session.execute(select(User.org_unit_id, func.count()).where(User.active.is_(True))
                                     .group_by(User.org_unit_id)).all())
    return render_template("people/orgs.html", units=units, form=form, counts=counts,
                           kinds=KIND_LABELS, can_manage=lambda o: can_manage_org(current_user, o))


def _org_problem(kind: str, code: str | None, parent: OrgUnit | None,
                 org: OrgUnit | None) -> str | None:
    """Return why a unit cannot have this kind, code and parent, or None when it can."""
    order = list(ORG_KINDS)
    if parent is None and current_user.role != "admin":
        return _("请选择上级单位。")
    if parent is not None:
        if not (current_user.role == "admin" or can_manage_org(current_user, parent)
                or parent.id == current_user.org_unit_id):
            return _("不能在这个单位下面新建或移入单位。")
        if order.index(parent.kind) >= order.index(kind):
            return _("上级单位的层级必须高于本单位。")
        if org is not None and parent.path.startswith(org.path):
            return _("不能移到自己的下级单位下面。")
    if code:
        other = db.session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        if other is not None and (org is None or other.id != org.id):
            return _("代码已被其他单位使用。")
    return None


class OrgEditForm(FlaskForm):
    name = StringField(_l("名称"), validators=[DataRequired(), Length(max=100)])
    code = StringField(_l("代码（可选）"), validators=[Optional(), Length(max=32)])
    parent_id = SelectField(_l("上级单位"), validate_choice=False)
    is_active = BooleanField(_l("在用"))


@bp.route("/orgs/<int:org_id>", methods=["GET", "POST"])
@staff_only
def org_edit(org_id):
    org = get_org_or_404(org_id, manage=True)
    form = OrgEditForm(obj=org)
    form.parent_id.choices = [(v, label) for v, label in org_choices(("county", "city", "province"))
                              if v != str(org.id)]
    if request.method == "GET":
        form.parent_id.data = str(org.parent_id or "")
    if form.validate_on_submit():
        parent = db.session.get(OrgUnit, int(form.parent_id.data)) if form.parent_id.data else org.parent
        error = _org_problem(org.kind, (form.code.data or "").strip() or None, parent, org)
        if error:
            flash(error, "error")
        else:
            changes = {}
            for field in ("name", "code", "is_active"):
                value = getattr(form, field).data
                value = (value.strip() or None) if isinstance(value, str) and field == "code" else (
                    value.strip() if isinstance(value, str) else value)
                if getattr(org, field) != value:
                    changes[field] = [str(getattr(org, field)), str(value)]
                    setattr(org, field, value)
            if parent is not None and parent.id != org.parent_id:
                changes["parent"] = [org_label(org.parent), parent.name]
                _move(org, parent)
            if changes:
                action = "org.deactivate" if changes.get("is_active") == ["True", "False"] else "org.update"
                audit.record(action, org, _l("修改单位 %(name)s", name=org.name), changes=changes)
                db.session.commit()
                flash(_("已保存。"), "info")
            return redirect(url_for("people.orgs"))
    return render_template("people/org_form.html", form=form, org=org)


def _move(org: OrgUnit, parent: OrgUnit) -> None:
    """Re-parent a unit and rewrite the materialised paths of its whole subtree."""
    old = org.path
    new = parent.path + f"{org.id}/"
    for unit in db.session.scalars(select(OrgUnit).where(OrgUnit.path.startswith(old))):
        unit.path = new + unit.path[len(old):]
    org.parent = parent


# -- audit log --------------------------------------------------------------------------------

@bp.get("/audit")
@roles_required("admin")
def audit_log():
    page = max(1, request.args.get("page", 1, type=int))
    query = select(AuditLog)
    action = request.args.get("action", "").strip()[:64]
    if action:
        query = query.where(AuditLog.action.startswith(action))
    entries = db.session.scalars(query.order_by(AuditLog.id.desc()).limit(PER_PAGE)
                                 .offset((page - 1) * PER_PAGE)).all()
    return render_template("people/audit.html", entries=entries, page=page, action=action)


# -- a person's data export (个人信息, privacy requests) ----------------------------------------

class DataExportForm(FlaskForm):
    fmt = SelectField(choices=[("xlsx", "xlsx"), ("json", "json")])


@bp.get("/users/<int:user_id>/data")
@staff_only
def user_data(user_id):
    """What an export of this person's data would hold (sections and counts), and the buttons."""
    from flask import current_app

    from .. import personal_data

    user = get_user_or_404(user_id, edit=True)
    doc = personal_data.document(current_app.extensions["kb.pm"], user)
    return render_template("people/personal_data.html", doc=doc, person=user, staff_view=True,
                           form=DataExportForm())


@bp.post("/users/<int:user_id>/data")
@staff_only
def user_data_export(user_id):
    """Download the person's data; every staff export is written to the audit log."""
    from flask import current_app

    from .. import personal_data

    user = get_user_or_404(user_id, edit=True)
    form = DataExportForm()
    if not form.validate_on_submit():
        abort(400)
    fmt = form.fmt.data
    doc = personal_data.document(current_app.extensions["kb.pm"], user)
    audit.record("user.data_export", user,
                 _l("导出 %(username)s（%(name)s）的个人信息（%(fmt)s）", username=user.username,
                    name=user.name, fmt=fmt),
                 format=fmt, sections=[s["key"] for s in doc["sections"]])
    db.session.commit()
    if fmt == "json":
        body, mime = personal_data.to_json(doc), "application/json"
    else:
        body, mime = personal_data.to_xlsx(doc), personal_data.XLSX_MIME
    return Response(body, mimetype=mime, headers={
        "Content-Disposition": f"attachment; filename={personal_data.filename(user, fmt)}",
        "Cache-Control": "no-store"})
