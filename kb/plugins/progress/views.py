"""Pages and endpoints of the progress plugin (blueprint ``progress``, under ``/progress``)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
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
from sqlalchemy import insert, select
from wtforms import (
    DateField,
    FloatField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from kb import audit, db, get_catalog, plugin_manager
from kb.authz import (
    REPORT_ROLES,
    STAFF_ROLES,
    get_org_or_404,
    get_user_or_404,
    in_scope,
    login_required,
    managed_org_ids,
    roles_required,
)
from kb.i18n import N_
from kb.models import OrgUnit, User, utcnow

from . import report as reports
from . import rules, service
from .models import Claim, LedgerEntry, Notice, RequiredCourse

bp = Blueprint("progress", __name__, url_prefix="/progress", template_folder="templates",
               static_folder="static", static_url_path="/static")

staff_only = roles_required(*sorted(STAFF_ROLES))
report_roles = roles_required(*sorted(REPORT_ROLES))

SOURCE_LABELS = {"lesson": _l("课程学习"), "quiz": _l("测验通过"), "attendance": _l("培训班签到"),
                 "claim": _l("学时申报"), "correction": _l("更正")}
STATUS_LABELS = {"pending": _l("待审核"), "approved": _l("已通过"), "rejected": _l("未通过")}
# The title stored on a correction's ledger row (in Chinese); _record.html shows it translated.
CORRECTION_TITLE = N_("学时更正")


@bp.app_template_filter("progress_hours")
def hours_filter(value) -> str:
    return reports.fmt(value or 0, "number")


@bp.app_template_filter("progress_local")
def local_filter(value, fmt="%Y-%m-%d %H:%M") -> str:
    return "" if value is None else rules.local(value).strftime(fmt)


def _year() -> int:
    year = request.args.get("year", type=int)
    this = rules.local_today().year
    return year if year and 2000 <= year <= this + 1 else this


def _lesson_or_404(lesson_id: int):
    lesson = get_catalog().lesson_by_id(lesson_id)
    if lesson is None or not plugin_manager().hook.kb_can_view(user=current_user, obj=lesson):
        abort(404)
    return lesson


# -- the learner ------------------------------------------------------------------------------

@bp.post("/beat")
@login_required
def beat():
    """A heartbeat from the lesson page: {"lesson_id": int, "scroll": 0..1 (furthest read),
    "at": 0..1 (where the reader is now)}. The person and the time are the server's."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("lesson_id"), int):
        return jsonify({"error": "bad request"}), 400
    lesson = get_catalog().lesson_by_id(data["lesson_id"])
    if lesson is None or not plugin_manager().hook.kb_can_view(user=current_user, obj=lesson):
        return jsonify({"error": "not found"}), 404
    result = service.heartbeat(current_user, lesson, data.get("scroll"), position=data.get("at"))
    db.session.commit()
    # Marks the response private (no-store) without reloading the user the commit expired.
    g._kb_private = True
    return jsonify({"seconds": result.seconds, "completed": result.completed,
                    "just_completed": result.just_completed})


@bp.post("/lessons/<int:lesson_id>/done")
@login_required
def done(lesson_id):
    lesson = _lesson_or_404(lesson_id)
    ok, missing = service.press_done(current_user, lesson)
    db.session.commit()
    if ok:
        flash(_("已记录：本课学完了。"), "success")
    else:
        flash(_("再学习约 %(m)s 分钟后才能标记学完。", m=max(1, -(-missing // 60))), "error")
    return redirect(lesson.url + "#panel-progress")


class ClaimForm(FlaskForm):
    title = StringField(_l("培训名称"), validators=[DataRequired(), Length(max=200)])
    held_on = DateField(_l("培训日期"), validators=[InputRequired(message=_l("请填写日期"))])
    hours = FloatField(_l("学时"), validators=[InputRequired(message=_l("请填写学时数"))])
    note = TextAreaField(_l("说明（主办单位、证明材料等）"), validators=[Optional(), Length(max=1000)])

    def validate_hours(self, field):
        from wtforms import ValidationError

        if field.data is None or field.data != field.data or field.data <= 0:
            raise ValidationError(_("学时必须大于 0。"))
        if field.data > rules.MAX_CLAIM_HOURS:
            raise ValidationError(_("一次申报不能超过 %(n)s 学时，请分次申报或联系县人大常委会。",
                                    n=int(rules.MAX_CLAIM_HOURS)))

    def validate_held_on(self, field):
        from wtforms import ValidationError

        if field.data and field.data > rules.local_today():
            raise ValidationError(_("培训日期不能晚于今天。"))
        if field.data and field.data.year < rules.local_today().year - 1:
            raise ValidationError(_("只能申报今年和去年的培训。"))


def _record_context(user, year):
    cat = get_catalog()
    done_by_course = service.done_by_course(user.id)
    completed = service.completed_lessons(user.id)
    can_view = plugin_manager().hook.kb_can_view
    courses = []
    for c in cat.courses:
        shown = [lv for lv in c.lessons if can_view(user=user, obj=lv)]
        if shown:
            done = len({lv.slug for lv in shown} & completed.get(c.slug, set()))
            courses.append((c, done, len(shown)))
    today = rules.local_today()
    required = [(r, cat.course(r.course_slug), done_by_course.get(r.course_slug, 0))
                for r in service.required_for(user, year)]
    required = [(r, c, n, c is not None and n >= len(c.lessons) > 0, r.due_on < today)
                for r, c, n in required]
    entries = list(db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.user_id == user.id, LedgerEntry.year == year)
        .order_by(LedgerEntry.occurred_at.desc(), LedgerEntry.id.desc())))
    claims = list(db.session.scalars(select(Claim).where(Claim.user_id == user.id)
                                     .order_by(Claim.created_at.desc()).limit(20)))
    total = round(sum(e.hours for e in entries), 2)
    target = rules.target_for(user.role)
    return dict(person=user, year=year, courses=courses, required=required, entries=entries,
                claims=claims, total=total, target=target,
                percent=min(100, int(total * 100 / target)) if target else 0,
                sources=SOURCE_LABELS, statuses=STATUS_LABELS, today=today,
                role_labels=reports.ROLE_LABELS)


@bp.get("/")
@login_required
def mine():
    return render_template("progress/mine.html", **_record_context(current_user, _year()),
                           own=True, notices=service.unread_notices(current_user.id, 20))


@bp.get("/record")
@login_required
def record():
    return render_template("progress/record.html", **_record_context(current_user, _year()),
                           printed_at=rules.local(utcnow()))


@bp.route("/claims/new", methods=["GET", "POST"])
@login_required
def claim_new():
    form = ClaimForm()
    if form.validate_on_submit():
        claim = Claim(user_id=current_user.id, org_unit_id=current_user.org_unit_id,
                      title=form.title.data.strip(), hours=round(form.hours.data, 2),
                      held_on=form.held_on.data, note=(form.note.data or "").strip())
        db.session.add(claim)
        db.session.commit()
        flash(_("已提交学时申报，等待县人大常委会审核。"), "success")
        return redirect(url_for("progress.mine"))
    if request.method == "POST":
        flash(_("申报没有提交：请按提示修改。"), "error")
    return render_template("progress/claim_form.html", form=form)


@bp.post("/notices/<int:notice_id>/read")
@login_required
def notice_read(notice_id):
    notice = db.session.get(Notice, notice_id)
    if notice is None or notice.user_id != current_user.id:
        abort(404)
    if notice.read_at is None:
        notice.read_at = utcnow()
        db.session.commit()
    return redirect(_next_url())


@bp.post("/notices/read-all")
@login_required
def notices_read_all():
    from sqlalchemy import update

    db.session.execute(update(Notice).where(Notice.user_id == current_user.id,
                                            Notice.read_at.is_(None)).values(read_at=utcnow()))
    db.session.commit()
    return redirect(_next_url())


def _next_url() -> str:
    target = request.form.get("next") or url_for("core.home")
    return target if target.startswith("/") and not target.startswith("//") else url_for("core.home")


# -- county staff: claims, required courses, corrections ---------------------------------------

def _scope_filter(column):
    ids = managed_org_ids(current_user)
    return None if ids is None else column.in_(ids or {-1})


@bp.get("/claims")
@staff_only
def claims():
    status = request.args.get("status", "pending")
    query = select(Claim, User).join(User, User.id == Claim.user_id)
    where = _scope_filter(User.org_unit_id)
    if where is not None:
        query = query.where(where)
    if status in STATUS_LABELS:
        query = query.where(Claim.status == status)
    rows = db.session.execute(query.order_by(Claim.created_at.desc()).limit(200)).all()
    orgs = dict(db.session.execute(select(OrgUnit.id, OrgUnit.name).where(
        OrgUnit.id.in_({u.org_unit_id for _, u in rows} or {-1}))).all())
    return render_template("progress/claims.html", rows=rows, status=status, orgs=orgs,
                           statuses=STATUS_LABELS)


@bp.post("/claims/<int:claim_id>/decide")
@staff_only
def claim_decide(claim_id):
    claim = db.session.get(Claim, claim_id)
    person = db.session.get(User, claim.user_id) if claim else None
    if claim is None or person is None or not in_scope(current_user, person.org_unit_id):
        abort(404)
    decision = request.form.get("decision")
    if decision not in ("approve", "reject"):
        flash(_("请选择通过或不通过。"), "error")
        return redirect(url_for("progress.claims"))
    if claim.status != "pending":
        flash(_("这条申报已经审核过了。"), "error")
        return redirect(url_for("progress.claims"))
    claim.status = "approved" if decision == "approve" else "rejected"
    claim.decided_by_id, claim.decided_at = current_user.id, utcnow()
    claim.decision_note = (request.form.get("note") or "").strip()[:500]
    if claim.status == "approved":
        service.add_entry(user_id=claim.user_id, hours=claim.hours, source="claim",
                          title=claim.title, key=f"claim:{claim.id}",
                          occurred_at=datetime(claim.held_on.year, claim.held_on.month,
                                                       claim.held_on.day, 4),
                          note=claim.note, created_by_id=current_user.id)
    audit.record(f"progress.claim.{claim.status}", claim,
                 _l("%(name)s 学时申报「%(title)s」%(hours)s 学时：%(status)s", name=person.name,
                    title=claim.title, hours=claim.hours, status=STATUS_LABELS[claim.status]),
                 hours=claim.hours)
    db.session.commit()
    flash(_("已审核：%(s)s", s=STATUS_LABELS[claim.status]), "success")
    return redirect(url_for("progress.claims"))


class MultiCheckbox(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class RequiredForm(FlaskForm):
    county = SelectField(_l("县（区）"), coerce=int)
    course = SelectField(_l("课程"), validators=[DataRequired()])
    roles = MultiCheckbox(_l("适用对象"), validators=[DataRequired(message=_l("请至少选择一类人员"))])
    year = SelectField(_l("年度"), coerce=int)
    due_on = DateField(_l("完成期限"), validators=[InputRequired(message=_l("请填写完成期限"))])


def _counties():
    query = select(OrgUnit).where(OrgUnit.kind == "county", OrgUnit.is_active.is_(True))
    where = _scope_filter(OrgUnit.id)
    if where is not None:
        query = query.where(where)
    return list(db.session.scalars(query.order_by(OrgUnit.path)))


@bp.route("/required", methods=["GET", "POST"])
@staff_only
def required():
    counties = _counties()
    this = rules.local_today().year
    form = RequiredForm()
    form.county.choices = [(c.id, c.name) for c in counties]
    form.course.choices = [(c.slug, c.title) for c in get_catalog().courses]
    form.roles.choices = [(r, str(reports.ROLE_LABELS[r])) for r in rules.LEARNER_ROLES]
    form.year.choices = [(y, str(y)) for y in (this, this + 1)]
    if form.validate_on_submit():
        if form.due_on.data.year != form.year.data:
            form.due_on.errors.append(_("完成期限应在所选年度内。"))
        else:
            added = 0
            for role in form.roles.data:
                exists = db.session.scalar(select(RequiredCourse).where(
                    RequiredCourse.county_id == form.county.data, RequiredCourse.year == form.year.data,
                    RequiredCourse.course_slug == form.course.data, RequiredCourse.role == role))
                if exists:
                    exists.due_on = form.due_on.data
                else:
                    db.session.add(RequiredCourse(county_id=form.county.data, year=form.year.data,
                                                  course_slug=form.course.data, role=role,
                                                  due_on=form.due_on.data,
                                                  created_by_id=current_user.id))
                    added += 1
            audit.record("progress.required.set", None,
                         _l("必修课程 %(course)s（%(year)s）：%(roles)s", course=form.course.data,
                            year=form.year.data, roles=[reports.ROLE_LABELS.get(r, r) for r in form.roles.data]),
                         county_id=form.county.data, course=form.course.data, roles=form.roles.data)
            db.session.commit()
            flash(_("已设置必修课程。"), "success")
            return redirect(url_for("progress.required"))
    rows = []
    if counties:
        rows = list(db.session.scalars(select(RequiredCourse).where(
            RequiredCourse.county_id.in_([c.id for c in counties]))
            .order_by(RequiredCourse.year.desc(), RequiredCourse.due_on, RequiredCourse.course_slug)))
    names = {c.id: c.name for c in counties}
    return render_template("progress/required.html", form=form, rows=rows, names=names,
                           catalog=get_catalog(), roles=reports.ROLE_LABELS)


@bp.post("/required/<int:req_id>/delete")
@staff_only
def required_delete(req_id):
    row = db.session.get(RequiredCourse, req_id)
    if row is None or not in_scope(current_user, row.county_id):
        abort(404)
    audit.record("progress.required.delete", row,
                 _l("取消必修 %(course)s（%(year)s，%(role)s）", course=row.course_slug, year=row.year,
                    role=reports.ROLE_LABELS.get(row.role, row.role)))
    db.session.delete(row)
    db.session.commit()
    flash(_("已取消这门必修课。"), "success")
    return redirect(url_for("progress.required"))


class CorrectionForm(FlaskForm):
    hours = FloatField(_l("更正学时（可为负数）"), validators=[InputRequired(message=_l("请填写学时数"))])
    note = StringField(_l("更正原因"), validators=[DataRequired(message=_l("请写明更正原因")),
                                                  Length(max=500)])

    def validate_hours(self, field):
        from wtforms import ValidationError

        if field.data is None or field.data != field.data or field.data == 0 \
                or abs(field.data) > rules.MAX_CORRECTION_HOURS:
            raise ValidationError(_("更正学时应在 -%(n)s 到 %(n)s 之间且不为 0。",
                                    n=int(rules.MAX_CORRECTION_HOURS)))


@bp.get("/people/<int:user_id>")
@login_required
def person(user_id):
    user = get_user_or_404(user_id)
    form = CorrectionForm() if current_user.role in STAFF_ROLES and user.id != current_user.id else None
    return render_template("progress/person.html", **_record_context(user, _year()), form=form)


@bp.post("/people/<int:user_id>/correct")
@staff_only
def person_correct(user_id):
    user = get_user_or_404(user_id, edit=True)
    form = CorrectionForm()
    if form.validate_on_submit():
        year = _year()
        occurred = utcnow() if year == rules.local_today().year else datetime(year, 12, 31, 4)
        service.add_entry(user_id=user.id, hours=form.hours.data, source="correction",
                          title=CORRECTION_TITLE, key=None, occurred_at=occurred,
                          note=form.note.data.strip(), created_by_id=current_user.id)
        audit.record("progress.correction", user,
                     _l("%(name)s 学时更正 %(hours)s：%(note)s", name=user.name, hours=form.hours.data,
                        note=form.note.data),
                     hours=form.hours.data, year=year)
        db.session.commit()
        flash(_("已记入更正。"), "success")
    else:
        for errors in form.errors.values():
            for e in errors:
                flash(str(e), "error")
    return redirect(url_for("progress.person", user_id=user.id, year=request.args.get("year")))


# -- reports ----------------------------------------------------------------------------------

@bp.get("/report")
@report_roles
def report_home():
    org = current_user.org_unit
    if org is None:
        abort(404)
    return redirect(url_for("progress.report", org_id=org.id, **request.args))


def _row_url(level, row_id):
    if level == "person":
        return url_for("progress.person", user_id=row_id)
    return url_for("progress.report", org_id=row_id)


def _build_report(org_id):
    org = get_org_or_404(org_id)
    args = request.args
    return reports.build(org, _year(), current_user.id, q=args.get("q", "").strip()[:50],
                         role=args.get("role", ""), status=args.get("status", ""),
                         sort=args.get("sort", ""), desc=args.get("dir") == "desc",
                         url_for_row=_row_url)


@bp.get("/report/<int:org_id>")
@report_roles
def report(org_id):
    rep = _build_report(org_id)
    crumbs = []
    parent = rep.org
    while parent is not None and in_scope(current_user, parent.id):
        crumbs.insert(0, parent)
        parent = parent.parent
    this = rules.local_today().year
    return render_template("progress/report.html", rep=rep, chart=reports.chart(rep), crumbs=crumbs,
                           args=request.args.to_dict(), years=range(this, this - 4, -1),
                           roles=reports.ROLE_LABELS,
                           can_remind=current_user.role in STAFF_ROLES and rep.level == "person")


@bp.get("/report/<int:org_id>/export.<fmt>")
@report_roles
def report_export(org_id, fmt):
    if fmt not in ("csv", "xlsx"):
        abort(404)
    rep = _build_report(org_id)
    if fmt == "csv":
        body, mime = reports.to_csv(rep), "text/csv; charset=utf-8"
    else:
        body, mime = reports.to_xlsx(rep), \
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    suffix = _("-未完成名单") if request.args.get("status") == "incomplete" else ""
    name = _("学习情况-%(org)s-%(year)s", org=rep.org.name, year=rep.year) + f"{suffix}.{fmt}"
    return Response(body, mimetype=mime, headers={
        "Content-Disposition": f"attachment; filename=progress-{rep.org.id}-{rep.year}.{fmt}; "
                               f"filename*=UTF-8''{quote(name)}"})


class RemindForm(FlaskForm):
    to = RadioField(_l("发给"), choices=[("incomplete", _l("未完成名单中的人员")),
                                       ("secretary", _l("本乡镇人大秘书"))], default="incomplete")
    body = TextAreaField(_l("提醒内容"), validators=[DataRequired(message=_l("请填写提醒内容")),
                                                 Length(max=500)])


@bp.post("/report/<int:org_id>/remind")
@staff_only
def remind(org_id):
    org = get_org_or_404(org_id)
    if org.kind != "township":
        abort(404)
    form = RemindForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for e in errors:
                flash(str(e), "error")
        return redirect(url_for("progress.report", org_id=org.id, status="incomplete"))
    if form.to.data == "secretary":
        ids = list(db.session.scalars(select(User.id).where(
            User.org_unit_id == org.id, User.role == "secretary", User.active.is_(True))))
    else:
        rep = reports.build(org, _year(), current_user.id, status="incomplete", url_for_row=_row_url)
        ids = [r.id for r in rep.rows]
    if ids:
        now = utcnow()
        db.session.execute(insert(Notice), [
            {"user_id": i, "sender_id": current_user.id, "org_unit_id": org.id,
             "body": form.body.data.strip(), "created_at": now} for i in ids])
        audit.record("progress.remind", org, _l("向%(org)s %(n)s 人发送站内提醒", org=org.name, n=len(ids)),
                     to=form.to.data, count=len(ids))
        db.session.commit()
        flash(_("已向 %(n)s 人发送站内提醒。", n=len(ids)), "success")
    else:
        flash(_("没有需要提醒的人员。"), "error")
    return redirect(url_for("progress.report", org_id=org.id, status="incomplete"))


def remind_form():
    return RemindForm(body=_("请抓紧完成本年度的学习任务（学时和必修课程）。打开「我的学习」可查看还差哪些。"))


@bp.app_context_processor
def _helpers():
    return {"progress_remind_form": remind_form}


