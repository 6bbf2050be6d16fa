"""Time a 5,000-row roster import (preview + commit) and a re-import, on SQLite and PostgreSQL.

Run from the repository root::

    .venv/bin/python -m bench.roster_import [--rows 5000] [--runs 3]

Each run gets a fresh database (SQLite in a temp dir; PostgreSQL in a fresh schema of
``KB_TEST_DATABASE_URL``, default the local server, skipped with a message when unreachable)
with one county of 20 townships and a county_staff importer. A run times ``build_preview`` and
``commit`` of a new roster, then of the same file again (every row unchanged). The table shows
the median of the runs; the last line is the same as JSON. The target is preview + commit of
5,000 rows in under 10 s on both backends.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

PG_URL = os.environ.get("KB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_SECONDS = 10.0

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰春梅海燕文斌德山林"
ROLES = ["人大代表"] * 16 + ["主席团成员", "主席团成员", "人大主席", "人大秘书"]
ETHNICITIES = ["汉族"] * 9 + ["回族", "苗族", "土家族", "壮族"]


def roster_rows(n: int, townships: list[str], seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    header = ["姓名", "手机号", "乡镇/单位", "职务", "代表证号", "性别", "民族"]
    rows = [header]
    for i in range(n):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        phone = "" if i % 20 == 0 else f"1{rng.choice('3456789')}{i:09d}"
        card = f"DB{i:06d}" if i % 3 == 0 or not phone else ""
        rows.append([name, phone, rng.choice(townships), rng.choice(ROLES), card,
                     rng.choice("男女"), rng.choice(ETHNICITIES)])
    return rows


def to_xlsx(rows: list[list[str]]) -> bytes:
    import io

    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("花名册")
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_csv(rows: list[list[str]]) -> bytes:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode("gbk")  # what Excel on Chinese Windows saves


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"),
                             connect_timeout=3):
            return True
    except Exception:
        return False


@contextmanager
def fresh_database(backend: str):
    """Yield (database URL, scratch dir); drop everything afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="kb-roster-bench-"))
    try:
        if backend == "sqlite":
            yield f"sqlite:///{tmp / 'kb.sqlite3'}", tmp
            return
        import psycopg

        schema = "bench_" + uuid.uuid4().hex[:12]
        plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            sep = "&" if "?" in plain else "?"
            yield f"{plain}{sep}options=-csearch_path%3D{schema}", tmp
        finally:
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_app(url: str, tmp: Path):
    from kb import create_app, dbmigrate

    for sub in ("courses", "quizzes", "index", "instance"):
        (tmp / sub).mkdir(exist_ok=True)
    app = create_app({
        "TESTING": True, "SECRET_KEY": "bench", "DATABASE_URL": url,
        "INSTANCE_DIR": str(tmp / "instance"), "COURSES_DIR": str(tmp / "courses"),
        "QUIZZES_DIR": str(tmp / "quizzes"), "INDEX_DIR": str(tmp / "index"),
        "CATALOG_TTL": 0.0,
    })
    with app.app_context():
        dbmigrate.upgrade(app)
    return app


def seed_county(db, townships: list[str]):
    from kb.models import OrgUnit, User

    def add(kind, name, parent=None, code=None):
        org = OrgUnit(kind=kind, name=name, code=code, parent_id=parent.id if parent else None,
                      path="/")
        db.session.add(org)
        db.session.flush()
        org.path = (parent.path if parent else "/") + f"{org.id}/"
        return org

    province = add("province", "某省")
    county = add("county", "某县", province, "C1")
    for i, name in enumerate(townships, 1):
        add("township", name, county, f"C1{i:02d}")
    staff = User(username="county-staff", name="县干部", role="county_staff",
                 org_unit_id=county.id, phone="13000000000")
    db.session.add(staff)
    db.session.commit()
    return staff.id


def one_run(backend: str, filename: str, data: bytes, townships: list[str]) -> dict:
    from kb.extensions import db
    from kb.models import User
    from kb.people import roster

    with fresh_database(backend) as (url, tmp):
        app = build_app(url, tmp)
        try:
            with app.app_context():
                staff_id = seed_county(db, townships)
                db.session.remove()
            timings = {}
            for phase in ("import", "reimport"):
                with app.app_context():  # a fresh request: a fresh session and scope cache
                    importer = db.session.get(User, staff_id)
                    t0 = time.perf_counter()
                    preview = roster.build_preview(filename, data, importer)
                    t1 = time.perf_counter()
                    if not preview.ok:
                        raise SystemExit(f"{backend} {filename}: preview has errors: "
                                         f"{preview.errors[:5]}")
                    # The web view stores the preview as JSON between preview and confirm.
                    payload = json.loads(json.dumps(preview.to_payload()))
                    result = roster.commit(roster.Preview.from_payload(payload), importer)
                    t2 = time.perf_counter()
                    timings[phase] = {"preview": t1 - t0, "commit": t2 - t1,
                                      "counts": preview.counts,
                                      "created": len(result.created), "updated": result.updated}
                    db.session.remove()
            imp, re = timings["import"], timings["reimport"]
            assert imp["counts"]["new"] == imp["created"] > 0, imp
            assert re["counts"]["unchanged"] == imp["created"] and re["created"] == 0, re
            return {"preview": imp["preview"], "commit": imp["commit"],
                    "total": imp["preview"] + imp["commit"], "re_preview": re["preview"],
                    "re_commit": re["commit"], "re_total": re["preview"] + re["commit"],
                    "new": imp["created"]}
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("KB_PLUGINS", "quizzes,attendance,progress")

    townships = [f"第{i}镇" if i % 4 else f"第{i}乡" for i in range(1, 21)]
    rows = roster_rows(args.rows, townships)
    files = {"xlsx": ("roster.xlsx", to_xlsx(rows)), "csv": ("roster.csv", to_csv(rows))}
    backends = ["sqlite"]
    if pg_available():
        backends.append("postgresql")
    else:
        print(f"PostgreSQL is not reachable at {PG_URL}: skipping it")

    results = []
    for backend in backends:
        for fmt, (filename, data) in files.items():
            runs = [one_run(backend, filename, data, townships) for _ in range(args.runs)]
            med = {k: statistics.median(r[k] for r in runs)
                   for k in ("preview", "commit", "total", "re_preview", "re_commit", "re_total")}
            results.append({"backend": backend, "format": fmt, "rows": args.rows,
                            "bytes": len(data), "new": runs[0]["new"], "runs": args.runs,
                            **{k: round(v, 3) for k, v in med.items()},
                            "ok": med["total"] < TARGET_SECONDS})

    print(f"\nroster import of {args.rows} rows, median of {args.runs} runs (seconds); "
          f"target preview+commit < {TARGET_SECONDS:g} s")
    head = (f"{'backend':<11}{'format':<7}{'KB':>6}{'preview':>9}{'commit':>8}{'total':>8}"
            f"{'re-prev':>9}{'re-comm':>9}{'re-total':>10}  ok")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['backend']:<11}{r['format']:<7}{r['bytes'] / 1024:>6.0f}{r['preview']:>9.2f}"
              f"{r['commit']:>8.2f}{r['total']:>8.2f}{r['re_preview']:>9.2f}{r['re_commit']:>9.2f}"
              f"{r['re_total']:>10.2f}  {'yes' if r['ok'] else 'NO'}")
    print(json.dumps({"bench": "roster_import", "rows": args.rows, "runs": args.runs,
                      "target_s": TARGET_SECONDS, "results": results}, ensure_ascii=False))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
