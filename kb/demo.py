"""Demo organisations and accounts (``kb demo``): predictable names, one shared password."""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from .extensions import db
from .models import OrgUnit, User, add_org_unit, password_method
from .pluginhost import call_each

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈"
GIVEN = ["建国", "秀英", "海燕", "志强", "丽华", "国庆", "晓明", "春梅", "永红", "德福",
         "桂兰", "明辉", "玉珍", "文军", "淑芬", "卫东", "红霞", "立新", "雪梅", "振华",
         "金凤", "子豪", "雨涵", "俊杰", "思远", "佳怡", "宏伟", "燕妮", "家乐", "晓东"]

TOWNSHIPS = [("青山镇", "t1"), ("河口乡", "t2"), ("东城街道", "t3")]
DEPUTIES_PER_TOWNSHIP = 30
PRESIDIUM_PER_TOWNSHIP = 3


def _name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)]


def _org(kind, name, code, parent):
    unit = db.session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    return unit if unit is not None else add_org_unit(kind, name, parent, code)


def _user(username, name, role, org, phone, password_hash, created):
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username, name=name, role=role, org_unit=org, phone=phone,
                    password_hash=password_hash)
        db.session.add(user)
        created.append(username)
    return user


def demo_accounts() -> list[tuple[str, str, str]]:
    """Return (username, role, what) rows for the README and the ``kb demo`` printout."""
    rows = [("admin", "admin", "系统管理员"), ("staff1", "county_staff", "县人大常委会工作人员"),
            ("staff2", "county_staff", "县人大常委会工作人员")]
    for township, prefix in TOWNSHIPS:
        rows += [(f"{prefix}-chair", "chair", f"{township}人大主席"),
                 (f"{prefix}-sec", "secretary", f"{township}人大秘书"),
                 (f"{prefix}-p01", "presidium", f"{township}主席团成员（另有 p02–p03）"),
                 (f"{prefix}-d01", "deputy", f"{township}人大代表（另有 d02–d{DEPUTIES_PER_TOWNSHIP - PRESIDIUM_PER_TOWNSHIP:02d}）")]
    return rows


def load_demo(app, password: str) -> list[str]:
    """Create the demo county if missing; return the usernames created (empty on a re-run)."""
    created: list[str] = []
    # Every demo account shares the documented password: hash it once, not 99 times.
    password = generate_password_hash(password, method=password_method())
    province = _org("province", "示例省", "demo-p", None)
    city = _org("city", "示例市", "demo-c", province)
    county = _org("county", "示例县", "demo-x", city)
    users = {}
    users["admin"] = _user("admin", "系统管理员", "admin", province, None, password, created)
    for i in (1, 2):
        users[f"staff{i}"] = _user(f"staff{i}", _name(900 + i), "county_staff", county,
                                   f"1390000{i:04d}", password, created)
    n = 0
    for t, (township, prefix) in enumerate(TOWNSHIPS, start=1):
        unit = _org("township", township, f"demo-{prefix}", county)
        users[f"{prefix}-chair"] = _user(f"{prefix}-chair", _name(t * 100 + 1), "chair", unit,
                                         f"138{t:02d}000001", password, created)
        users[f"{prefix}-sec"] = _user(f"{prefix}-sec", _name(t * 100 + 2), "secretary", unit,
                                       f"138{t:02d}000002", password, created)
        for k in range(1, PRESIDIUM_PER_TOWNSHIP + 1):
            n += 1
            users[f"{prefix}-p{k:02d}"] = _user(f"{prefix}-p{k:02d}", _name(t * 100 + 10 + k),
                                                "presidium", unit, f"138{t:02d}0001{k:02d}",
                                                password, created)
        for k in range(1, DEPUTIES_PER_TOWNSHIP - PRESIDIUM_PER_TOWNSHIP + 1):
            users[f"{prefix}-d{k:02d}"] = _user(f"{prefix}-d{k:02d}", _name(t * 100 + 20 + k),
                                                "deputy", unit, f"138{t:02d}0002{k:02d}",
                                                password, created)
    db.session.commit()
    for _plugin, _ in call_each(app.extensions["kb.pm"], "kb_demo_data", app=app, users=users):
        pass
    db.session.commit()
    return created
