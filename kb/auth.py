"""Sign-in, sign-out and password changes."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import or_, select
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from . import audit, principal, ratelimit, throttle
from .authz import login_required, public
from .extensions import db, login_manager
from .models import User, utcnow

bp = Blueprint("auth", __name__)

# Pages a person who must change their password may still open.
OPEN_WHILE_CHANGING = {"auth.change_password", "auth.logout", "static", "core.healthz", "core.prefs"}


@login_manager.user_loader
def load_user(user_id: str):
    """The signed-in person, read afresh on every request (a role change or deactivation
    takes effect at once) with their org unit, which plugins read on most pages (scope,
    panels): a read-only :class:`kb.principal.Principal` from one prebuilt SELECT;
    ``.record()`` gives the mapped ``User``."""
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
        return None
    return principal.load(uid)


@bp.before_app_request
def force_password_change():
    if (current_user.is_authenticated and current_user.must_change_password
            and request.endpoint not in OPEN_WHILE_CHANGING):
        if request.path.startswith("/api/"):
            return {"error": "password change required", "status": 403}, 403
        return redirect(url_for("auth.change_password", next=request.full_path.rstrip("?")))
    return None


class LoginForm(FlaskForm):
    login = StringField(_l("手机号或用户名"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("密码或一次性登录码"), validators=[DataRequired(), Length(max=256)])
    remember = BooleanField(_l("在这台手机上保持登录"))


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("core.home")


def authenticate(ident: str, secret: str) -> tuple[User | None, bool]:
    """Return (user, used_one_time_code) for valid credentials, else (None, False)."""
    user = db.session.scalar(select(User).where(or_(User.username == ident, User.phone == ident)))
    if user is None or not user.active:
        return None, False
    if user.check_password(secret):
        return user, False
    if user.check_one_time_code(secret):
        return user, True
    return None, False


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    form = LoginForm()
    if form.validate_on_submit():
        ident = form.login.data.strip()
        address = request.remote_addr or ""
        verdict = throttle.check(ident, address)
        if not verdict.allowed:
            flash(_("登录失败次数过多，请 %(n)s 分钟后再试。", n=verdict.minutes), "error")
            return render_template("auth/login.html", form=form), 429
        user, by_code = authenticate(ident, form.password.data)
        if user is None:
            throttle.failure(ident, address)
            # One message for every failure: no hint whether the account exists.
            flash(_("手机号/用户名或密码不正确。"), "error")
            return render_template("auth/login.html", form=form), 200
        throttle.success(ident)
        if by_code:
            user.must_change_password = True
        user.last_login_at = utcnow()
        db.session.commit()
        login_user(user, remember=form.remember.data)
        if user.must_change_password:
            # Keep where the person was going (a check-in link they scanned) for afterwards.
            target = request.args.get("next")
            return redirect(url_for("auth.change_password",
                                    next=_safe_next(target) if target else None))
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("core.home"))


class PasswordForm(FlaskForm):
    current = PasswordField(_l("当前密码或一次性登录码"), validators=[DataRequired(), Length(max=256)])
    new = PasswordField(_l("新密码（至少 8 位）"), validators=[DataRequired(), Length(min=8, max=128)])
    confirm = PasswordField(_l("再输入一次新密码"),
                            validators=[DataRequired(), EqualTo("new", message=_l("两次输入的新密码不一致。"))])

    def validate_new(self, field):
        if field.data.isdigit() and len(set(field.data)) <= 2:
            raise ValidationError(_("密码太简单，请换一个。"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = PasswordForm()
    if form.validate_on_submit():
        user = current_user.record()  # the mapped User, to change it
        refused = ratelimit.blocked(ratelimit.PASSWORD_CHECK, user.id)
        if refused is not None:
            form.current.errors.append(_("当前密码输错次数过多，请 %(n)s 分钟后再试。", n=refused.minutes))
            return render_template("auth/password.html", form=form,
                                   forced=user.must_change_password), 429
        if not (user.check_password(form.current.data) or user.check_one_time_code(form.current.data)):
            ratelimit.count(ratelimit.PASSWORD_CHECK, user.id)
            form.current.errors.append(_("当前密码不正确。"))
        elif form.new.data == form.current.data:
            form.new.errors.append(_("新密码不能和旧密码相同。"))
        else:
            user.set_password(form.new.data)
            user.must_change_password = False
            user.otp_hash = None
            user.otp_expires_at = None
            audit.record("password.change", user, _l("本人修改密码"))
            db.session.commit()
            flash(_("密码已修改。"), "info")
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/password.html", form=form,
                           forced=current_user.must_change_password)


# -- the person's own data (个人信息) ---------------------------------------------------------

def _own_data():
    from flask import current_app

    from . import personal_data

    user = current_user._get_current_object()
    return user, personal_data.document(current_app.extensions["kb.pm"], user)


@bp.get("/account/data")
@login_required
def my_data():
    """Everything the system keeps about the signed-in person, on screen, with downloads."""
    user, doc = _own_data()
    return render_template("people/personal_data.html", doc=doc, person=user, staff_view=False)


@bp.get("/account/data.json")
@login_required
def my_data_json():
    from . import personal_data

    user, doc = _own_data()
    return _download(personal_data.to_json(doc), "application/json",
                     personal_data.filename(user, "json"))


@bp.get("/account/data.xlsx")
@login_required
def my_data_xlsx():
    from . import personal_data

    user, doc = _own_data()
    return _download(personal_data.to_xlsx(doc), personal_data.XLSX_MIME,
                     personal_data.filename(user, "xlsx"))


def _download(body: bytes, mime: str, name: str):
    from flask import Response

    return Response(body, mimetype=mime, headers={
        "Content-Disposition": f"attachment; filename={name}", "Cache-Control": "no-store"})
