// coursegen web app: progressive enhancement only; every page works without it.
(function () {
  "use strict";

  // Live progress: follow the course's Server-Sent Events and, on each
  // message, fetch the page again and swap in its live parts (the outline
  // appears, then each lesson as it lands), without a reload.
  function followProgress() {
    var course = document.getElementById("course");
    if (!course || !course.dataset.progress || !window.EventSource) return;
    var source = new EventSource(course.dataset.progress);
    var busy = false, again = false;
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(window.location.pathname, { credentials: "same-origin", headers: { "X-Live": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-live]").forEach(function (old) {
            var next = fresh.getElementById(old.id);
            if (!next) return;
            if (old.tagName === "DETAILS" && old.open) next.setAttribute("open", "");
            old.replaceWith(document.importNode(next, true));
          });
          var freshCourse = fresh.getElementById("course");
          if (freshCourse && !freshCourse.dataset.progress) {
            source.close();
            course.removeAttribute("data-progress");
          }
        })
        .catch(function () {})
        .then(function () { busy = false; if (again) { again = false; refresh(); } });
    }
    source.addEventListener("progress", function (e) {
      try {
        var p = JSON.parse(e.data);
        var status = document.getElementById("status");
        if (status) status.textContent = p.status;
        var bar = document.getElementById("progress");
        if (bar) { bar.max = p.total_lessons; bar.value = p.lessons_generated; }
        if (p.status === "READY" || p.status === "FAILED") source.close();
      } catch (_) {}
      refresh();
    });
  }

  // Code highlighting: comments, strings, numbers and keywords, built
  // with text nodes (never innerHTML) from the code's own text.
  var KEYWORDS = "fn let mut pub struct enum impl use mod match if else elif for while loop in return " +
    "def class import from as with try except finally raise lambda yield async await function const var " +
    "new this typeof instanceof switch case break continue default package func go defer interface type " +
    "select insert update delete where join create table and or not null true false True False None nil self";
  var KW = {};
  KEYWORDS.split(" ").forEach(function (k) { KW[k] = true; });
  var TOKEN = /(\/\/[^\n]*|#[^\n]*|\/\*[\s\S]*?\*\/|--[^\n]*)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`[^`]*`)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_]*)/g;
  function highlight(code) {
    var lang = (code.className.match(/language-(\w+)/) || [])[1] || "";
    var hashComments = /^(python|sh|bash|shell|ruby|r|yaml|toml)$/.test(lang);
    var dashComments = lang === "sql";
    var text = code.textContent, out = document.createDocumentFragment(), last = 0, m;
    function span(cls, t) { var s = document.createElement("span"); s.className = cls; s.textContent = t; out.appendChild(s); }
    TOKEN.lastIndex = 0;
    while ((m = TOKEN.exec(text))) {
      var comment = m[1];
      if (comment && ((comment[0] === "#" && !hashComments) || (comment[0] === "-" && !dashComments))) {
        TOKEN.lastIndex = m.index + 1; continue;
      }
      if (m[4] && !KW[m[4]] && !KW[m[4].toLowerCase()]) continue;
      out.appendChild(document.createTextNode(text.slice(last, m.index)));
      span(m[1] ? "tok-com" : m[2] ? "tok-str" : m[3] ? "tok-num" : "tok-kw", m[0]);
      last = m.index + m[0].length;
    }
    out.appendChild(document.createTextNode(text.slice(last)));
    code.textContent = "";
    code.appendChild(out);
    code.dataset.highlighted = "1";
  }

  // A lesson's questions: each gets a Check button that marks the answer
  // and says why, in place (text only, never markup). Without the script
  // each keeps its "Show the answer" reveal.
  function normalise(text) {
    return text.toLowerCase().replace(/\s+/g, " ").trim().replace(/[.!?]+$/, "");
  }
  function setUpCheck(box) {
    var button = box.querySelector(".check-answer");
    var feedback = box.querySelector(".feedback");
    if (!button || !feedback) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var right, answered;
      if (box.dataset.accepted !== undefined) {
        var input = box.querySelector("input");
        var accepted = [];
        try { accepted = JSON.parse(box.dataset.accepted); } catch (_) {}
        answered = normalise(input.value) !== "";
        right = answered && accepted.some(function (a) { return normalise(String(a)) === normalise(input.value); });
      } else {
        var wanted = (box.dataset.answer || "").split(",").filter(Boolean).sort().join(",");
        var chosen = [];
        box.querySelectorAll("input").forEach(function (i) {
          if (i.checked) chosen.push(i.value);
          var label = i.closest("label");
          if (label) label.classList.toggle("correct", wanted.split(",").indexOf(i.value) >= 0);
        });
        answered = chosen.length > 0;
        right = chosen.sort().join(",") === wanted;
      }
      box.classList.toggle("right", right);
      box.classList.toggle("wrong", !right);
      var verdict = right ? "\u2714 Right." : answered ? "\u2718 Not quite." : "\u2718 Not answered.";
      var why = box.dataset.explanation || "";
      feedback.textContent = why ? verdict + " " + why : verdict;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".practice .check").forEach(setUpCheck);
    followProgress();
    document.querySelectorAll("pre > code").forEach(highlight);
  });
})();
