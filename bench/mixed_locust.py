"""locust users for bench/mixed_load.py: signed-in people browsing, searching, reading (progress
heartbeats) and taking a quiz, each through one of the app servers in ``KB_MIXED_TARGETS``.

Not run by hand: bench/mixed_load.py writes the data file (``KB_MIXED_DATA``: sessions, lessons,
queries, the quiz) and starts ``locust --headless -f bench/mixed_locust.py``.

Each locust user is one person (their own signed session cookie and CSRF token) and talks to one
server: user k to server k mod N, like a load balancer spreading phones. No think time: each user
sends its next request as soon as the last one is answered (a closed loop), so the app servers are
saturated and the figures are their capacity.
"""

from __future__ import annotations

import itertools
import json
import os
import random

from locust import FastHttpUser, constant, task

DATA = json.loads(open(os.environ["KB_MIXED_DATA"], encoding="utf-8").read())
TARGETS = os.environ["KB_MIXED_TARGETS"].split(",")
_next_user = itertools.count()


class Person(FastHttpUser):
    wait_time = constant(0)
    host = TARGETS[0]

    def __init__(self, environment):
        self.number = next(_next_user)
        self.host = TARGETS[self.number % len(TARGETS)]
        super().__init__(environment)

    def on_start(self):
        session = DATA["sessions"][self.number % len(DATA["sessions"])]
        self.cookie = session["cookie"]
        self.csrf = session["csrf"]
        self.rng = random.Random(self.number)

    def _headers(self, extra=None):
        headers = {"Cookie": self.cookie}
        if extra:
            headers.update(extra)
        return headers

    def _get(self, path, name):
        with self.client.get(path, name=name, headers=self._headers(), allow_redirects=False,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")

    @task(25)
    def lesson(self):
        lesson = self.rng.choice(DATA["lessons"])
        self._get(lesson["url"], "lesson page")

    @task(5)
    def course(self):
        self._get(self.rng.choice(DATA["lessons"])["course_url"], "course page")

    @task(5)
    def home(self):
        self._get("/", "home")

    @task(10)
    def search(self):
        self._get("/search?q=" + self.rng.choice(DATA["queries"]), "search")

    @task(50)
    def heartbeat(self):
        lesson = self.rng.choice(DATA["lessons"])
        body = json.dumps({"lesson_id": lesson["id"], "scroll": round(self.rng.random(), 3)})
        with self.client.post("/progress/beat", data=body, name="heartbeat",
                              headers=self._headers({"Content-Type": "application/json",
                                                     "X-CSRFToken": self.csrf}),
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")

    @task(5)
    def quiz(self):
        """Start the quiz, save every answer (as the page's script does), submit."""
        quiz = DATA["quiz"]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        with self.client.post(f"/quizzes/{quiz['slug']}/start", data=f"csrf_token={self.csrf}",
                              name="quiz start", headers=self._headers(form),
                              allow_redirects=False, catch_response=True) as response:
            location = response.headers.get("Location", "") if response.status_code == 302 else ""
            if "/quizzes/attempt/" not in location:
                response.failure(f"{response.status_code} {location or 'no attempt'}")
                return
        attempt = "/quizzes/attempt/" + location.rsplit("/quizzes/attempt/", 1)[1].split("?")[0]
        json_headers = self._headers({"Content-Type": "application/json",
                                      "Accept": "application/json", "X-CSRFToken": self.csrf})
        for question_id, answer in quiz["questions"]:
            with self.client.post(attempt + "/answer", name="quiz answer", headers=json_headers,
                                  data=json.dumps({"question_id": question_id, "response": answer}),
                                  catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"{response.status_code}")
                    return
        with self.client.post(attempt + "/submit", data=f"csrf_token={self.csrf}", name="quiz submit",
                              headers=self._headers(form), allow_redirects=False,
                              catch_response=True) as response:
            if response.status_code != 302 or "/result" not in response.headers.get("Location", ""):
                response.failure(f"{response.status_code}")
