/* The live dashboard: one WebSocket (protocol routiq.v1, see realtime/PROTOCOL.md), authenticated
 * by the Django session. A snapshot sets the page; events follow in `seq` order. A gap (or a
 * heartbeat naming a later seq) asks the server to resync from the last seq applied; a closed
 * socket reconnects with exponential backoff and jitter, and the new snapshot sets the page again.
 * The worklist comes from the re-engagement API and is reloaded when profiles change.
 * Everything shown is set with textContent: nothing from the server is parsed as HTML. */
(function () {
  "use strict";

  var body = document.body;
  var config = {
    socketPath: body.dataset.socketPath,
    worklistUrl: body.dataset.worklistUrl,
    currency: body.dataset.currency || "AUD",
  };
  var PING_EVERY_MS = 25000; // under the server's 60 s idle timeout
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var EVENTS_SHOWN = 20;
  // Close codes after which reconnecting cannot help (PROTOCOL.md).
  var FINAL = { 4403: "You no longer have access to this clinic.", 4404: "This clinic no longer exists." };

  var state = { seq: null, socket: null, attempts: 0, pinger: null, resyncing: false, worklistTimer: null };

  function $(id) { return document.getElementById(id); }

  function money(value) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: config.currency, maximumFractionDigits: 0 })
        .format(value || 0);
    } catch (e) {
      return String(Math.round(value || 0));
    }
  }

  function number(value) { return value === null || value === undefined ? "–" : Number(value).toLocaleString(); }

  function setConnection(name, text) {
    body.dataset.state = name;
    $("connection").textContent = text;
  }

  function setSeq(seq) {
    state.seq = seq;
    body.dataset.seq = String(seq);
    $("seq").textContent = String(seq);
  }

  // --- charts: horizontal bars in SVG, drawn here (no library, no CDN) ---------------------------
  var SVG = "http://www.w3.org/2000/svg";

  function bars(svg, rows) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var most = Math.max.apply(null, rows.map(function (r) { return r.value; }).concat([1]));
    var rowHeight = 22, labelWidth = 120, width = 360;
    svg.setAttribute("viewBox", "0 0 " + (labelWidth + width + 60) + " " + rows.length * rowHeight);
    rows.forEach(function (row, i) {
      var y = i * rowHeight;
      var label = document.createElementNS(SVG, "text");
      label.setAttribute("x", 0);
      label.setAttribute("y", y + 15);
      label.textContent = row.label;
      var bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", labelWidth);
      bar.setAttribute("y", y + 4);
      bar.setAttribute("height", 14);
      bar.setAttribute("rx", 2);
      bar.setAttribute("width", Math.max(row.value ? 2 : 0, (row.value / most) * width));
      bar.setAttribute("fill", row.color || "#0b63ce");
      var count = document.createElementNS(SVG, "text");
      count.setAttribute("class", "count");
      count.setAttribute("x", labelWidth + (row.value / most) * width + 6);
      count.setAttribute("y", y + 15);
      count.textContent = number(row.value);
      svg.appendChild(label);
      svg.appendChild(bar);
      svg.appendChild(count);
    });
  }

  function showSummary(summary) {
    if (!summary) return;
    $("total-patients").textContent = number(summary.total_patients);
    $("with-upcoming").textContent = number(summary.with_upcoming);
    $("needing-contact").textContent = number(summary.needing_contact);
    $("value-at-risk").textContent = money(summary.value_at_risk);
    bars($("risk-chart"), [
      { label: "Critical", value: summary.critical_risk, color: "#b42318" },
      { label: "High", value: summary.high_risk, color: "#e0701b" },
      { label: "Medium", value: summary.medium_risk, color: "#d4a514" },
      { label: "Low", value: summary.low_risk, color: "#2e8b57" },
    ]);
    bars($("engagement-chart"), [
      { label: "Highly engaged", value: summary.highly_engaged },
      { label: "Moderately", value: summary.moderately_engaged },
      { label: "Low", value: summary.low_engagement },
      { label: "Disengaged", value: summary.disengaged },
    ]);
    var stages = summary.by_lifecycle_stage || {};
    bars($("stage-chart"), Object.keys(stages).map(function (name) {
      return { label: name.replace(/_/g, " "), value: stages[name], color: "#5b6b7b" };
    }));
    body.dataset.totalPatients = String(summary.total_patients);
  }

  function showDataAsOf(value) {
    $("data-as-of").textContent = value ? new Date(value).toLocaleString() : "no sync yet";
  }

  // --- sync status --------------------------------------------------------------------------------
  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function runLine(run) {
    var box = element("div");
    var when = run.finished_at || run.started_at;
    box.appendChild(element("p", run.pms + " " + run.mode + " sync: " + run.status +
      (run.current_resource && run.status === "running" ? " (" + run.current_resource + ")" : "") +
      (when ? " · " + new Date(when).toLocaleTimeString() : "") +
      (run.error_code ? " · " + run.error_code : "")));
    var stats = run.stats || {};
    Object.keys(stats).forEach(function (resource) {
      var s = stats[resource];
      var line = element("div", resource + ": " + number(s.fetched) + " read, " + number(s.created) + " new, " +
        number(s.updated) + " changed", "small");
      box.appendChild(line);
      if (run.status === "running" && s.listed_total) {
        var bar = element("div", undefined, "progress");
        var fill = element("span");
        fill.style.width = Math.min(100, (100 * (s.fetched || 0)) / s.listed_total) + "%";
        bar.appendChild(fill);
        box.appendChild(bar);
      }
    });
    return box;
  }

  var connections = [];

  function showSync() {
    var holder = $("sync");
    while (holder.firstChild) holder.removeChild(holder.firstChild);
    if (!connections.length) {
      holder.appendChild(element("p", "No practice-management system connected.", "muted"));
      return;
    }
    connections.forEach(function (c) {
      var run = c.active_run || c.last_run;
      holder.appendChild(element("p", c.pms + ": " + c.connection_status +
        (c.data_age_minutes !== null && c.data_age_minutes !== undefined ? " · data " + c.data_age_minutes + " min old" : ""),
        "muted small"));
      if (run) holder.appendChild(runLine(run));
    });
    var running = connections.some(function (c) { return c.active_run && c.active_run.status === "running"; });
    body.dataset.syncStatus = running ? "running" : (connections[0].last_run ? connections[0].last_run.status : "none");
  }

  function runChanged(run) {
    var c = connections.filter(function (x) { return x.pms === run.pms; })[0];
    if (!c) {
      c = { pms: run.pms, connection_status: "active", data_age_minutes: null, active_run: null, last_run: null };
      connections.push(c);
    }
    if (run.status === "running" || run.status === "queued") {
      c.active_run = run;
    } else {
      c.active_run = null;
      c.last_run = run;
    }
    showSync();
  }

  // --- worklist -------------------------------------------------------------------------------------
  function loadWorklist() {
    fetch(config.worklistUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        var rows = $("worklist");
        while (rows.firstChild) rows.removeChild(rows.firstChild);
        var patients = (answer && answer.prioritized_patients) || [];
        if (!patients.length) {
          var empty = element("tr");
          var cell = element("td", answer && answer.success === false ? answer.error.message : "Nobody to contact.", "muted");
          cell.colSpan = 5;
          empty.appendChild(cell);
          rows.appendChild(empty);
        }
        patients.forEach(function (p) {
          var row = element("tr");
          row.appendChild(element("td", p.patient_name));
          var risk = element("td");
          risk.appendChild(element("span", p.churn_risk + " " + p.churn_risk_score, "risk " + p.churn_risk));
          row.appendChild(risk);
          row.appendChild(element("td", p.risk_summary || ""));
          row.appendChild(element("td", p.next_step || ""));
          row.appendChild(element("td", money(p.value_at_risk)));
          rows.appendChild(row);
        });
        body.dataset.worklistRows = String(patients.length);
      })
      .catch(function () { /* the next update tries again */ });
  }

  function worklistSoon() {
    clearTimeout(state.worklistTimer);
    state.worklistTimer = setTimeout(loadWorklist, 500);
  }

  // --- events ---------------------------------------------------------------------------------------
  var SENTENCES = {
    sync_started: function (d) { return "Sync started (" + d.run.pms + ", " + d.run.mode + ")"; },
    sync_progress: function (d) { return "Sync: " + d.run.pages + " pages read" + (d.run.current_resource ? ", now " + d.run.current_resource : ""); },
    sync_completed: function (d) { return "Sync " + d.run.status; },
    sync_failed: function (d) { return "Sync failed" + (d.run.error_code ? ": " + d.run.error_code : ""); },
    appointments_changed: function (d) { return d.created + " appointments new, " + d.updated + " changed, " + d.removed + " removed"; },
    profiles_changed: function (d) { return d.patients.count + " patient profiles recomputed"; },
    metrics_updated: function () { return "Figures updated"; },
  };

  function logEvent(event) {
    var sentence = SENTENCES[event.type];
    if (!sentence) return;
    var list = $("events");
    var item = element("li", new Date(event.at).toLocaleTimeString() + " · " + sentence(event.data || {}));
    item.dataset.seq = String(event.seq);
    item.dataset.type = event.type;
    list.insertBefore(item, list.firstChild);
    while (list.children.length > EVENTS_SHOWN) list.removeChild(list.lastChild);
  }

  function applyEvent(event) {
    var data = event.data || {};
    if (data.run) runChanged(data.run);
    if (event.type === "metrics_updated") {
      showSummary(data.dashboard);
      showDataAsOf(data.data_as_of);
      worklistSoon();
    }
    if (event.type === "profiles_changed") worklistSoon();
    logEvent(event);
    setSeq(event.seq);
  }

  // --- the socket -----------------------------------------------------------------------------------
  function send(message) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
  }

  function resync() {
    if (state.resyncing || state.seq === null) return;
    state.resyncing = true;
    send({ type: "resync", since: state.seq });
  }

  function onMessage(message) {
    if (message.type === "snapshot") {
      state.resyncing = false;
      connections = message.sync || [];
      showSync();
      showSummary(message.dashboard && message.dashboard.summary);
      showDataAsOf(message.data_as_of);
      setSeq(message.seq);
      state.attempts = 0;
      setConnection("live", "Live");
      loadWorklist();
    } else if (message.type === "resynced") {
      state.resyncing = false;
    } else if (message.type === "heartbeat" || message.type === "pong") {
      if (state.seq !== null && message.seq > state.seq) resync();
    } else if (typeof message.seq === "number" && SENTENCES[message.type] !== undefined) {
      if (state.seq === null || message.seq <= state.seq) return; // before the snapshot, or seen
      if (message.seq !== state.seq + 1) return resync(); // a gap: the replay brings it in order
      applyEvent(message);
    }
  }

  function scheme() { return window.location.protocol === "https:" ? "wss://" : "ws://"; }

  function connect() {
    setConnection(state.attempts ? "reconnecting" : "connecting", state.attempts ? "Reconnecting…" : "Connecting…");
    var socket = new WebSocket(scheme() + window.location.host + config.socketPath, ["routiq.v1"]);
    state.socket = socket;
    socket.onmessage = function (frame) {
      var message;
      try { message = JSON.parse(frame.data); } catch (e) { return; }
      onMessage(message);
    };
    socket.onopen = function () {
      clearInterval(state.pinger);
      state.pinger = setInterval(function () { send({ type: "ping" }); }, PING_EVERY_MS);
    };
    socket.onclose = function (close) {
      clearInterval(state.pinger);
      state.resyncing = false;
      if (FINAL[close.code]) return setConnection("stopped", FINAL[close.code]);
      if (close.code === 4401) return setConnection("stopped", "Signed out: sign in again to see live figures.");
      var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempts));
      delay = delay / 2 + Math.random() * (delay / 2); // jitter: clients do not return together
      state.attempts += 1;
      setConnection("reconnecting", "Reconnecting in " + Math.ceil(delay / 1000) + " s");
      setTimeout(connect, delay);
    };
  }

  connect();
})();
