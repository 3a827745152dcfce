// SCORM 1.2 runtime of a coursegen lesson (one SCO per lesson).
// Finds the LMS's API object in the window chain, starts the session,
// scores the quiz on this page and reports score and status. Works offline
// and without an LMS (then it only shows the score).
(function () {
  "use strict";

  function findAPI(win) {
    var hops = 0;
    while (win && !win.API && win.parent && win.parent !== win && hops < 10) {
      win = win.parent;
      hops += 1;
    }
    return win && win.API ? win.API : null;
  }

  var api = findAPI(window);
  if (!api && window.opener) {
    api = findAPI(window.opener);
  }
  var active = false;
  var finished = false;
  if (api) {
    active = String(api.LMSInitialize("")) === "true";
  }

  function set(name, value) {
    if (active) {
      api.LMSSetValue(name, String(value));
    }
  }

  function finish() {
    if (active && !finished) {
      finished = true;
      api.LMSCommit("");
      api.LMSFinish("");
    }
  }

  var form = document.getElementById("quiz");
  var mastery = Number(document.body.getAttribute("data-mastery") || "80");

  if (!form) {
    // Nothing to score: reading the lesson completes it.
    set("cmi.core.lesson_status", "completed");
    if (active) {
      api.LMSCommit("");
    }
  } else {
    if (active && api.LMSGetValue("cmi.core.lesson_status") === "not attempted") {
      set("cmi.core.lesson_status", "incomplete");
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var questions = form.querySelectorAll("fieldset.question");
      var right = 0;
      for (var i = 0; i < questions.length; i += 1) {
        var q = questions[i];
        var chosen = q.querySelector("input:checked");
        var ok = chosen !== null && chosen.value === q.getAttribute("data-answer");
        if (ok) {
          right += 1;
        }
        q.className = "question " + (ok ? "correct" : "wrong");
        var explanation = q.querySelector(".explanation");
        if (explanation) {
          explanation.hidden = false;
        }
      }
      var score = questions.length ? Math.round((100 * right) / questions.length) : 100;
      set("cmi.core.score.min", 0);
      set("cmi.core.score.max", 100);
      set("cmi.core.score.raw", score);
      set("cmi.core.lesson_status", score >= mastery ? "passed" : "failed");
      finish();
      document.getElementById("quiz-result").textContent =
        right + " of " + questions.length + " right (" + score + "%)";
      document.getElementById("submit-quiz").disabled = true;
    });
  }

  window.addEventListener("pagehide", finish);
}());
