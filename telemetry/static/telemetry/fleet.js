// Fleet page: subscribe to every own device and show each reading as it arrives.
"use strict";

(function () {
  const badge = document.getElementById("connection");
  const table = document.querySelector("#fleet tbody");
  let delay = 500;

  function row(uid) {
    let tr = table && table.querySelector(`tr[data-device="${CSS.escape(uid)}"]`);
    if (!tr && table) {
      tr = document.createElement("tr");
      tr.dataset.device = uid;
      tr.innerHTML = '<td class="uid"></td><td></td><td class="state">online</td><td class="values"></td>';
      tr.querySelector(".uid").textContent = uid;
      table.appendChild(tr);
    }
    return tr;
  }

  function show(uid, readings) {
    const tr = row(uid);
    if (!tr) return;
    tr.querySelector(".state").textContent = "online";
    const cell = tr.querySelector(".values");
    for (const { metric, value } of readings) {
      let span = cell.querySelector(`span[data-metric="${CSS.escape(metric)}"]`);
      if (!span) {
        span = document.createElement("span");
        span.className = "metric";
        span.dataset.metric = metric;
        span.append(`${metric}: `, document.createElement("b"), " ");
        cell.appendChild(span);
      }
      span.querySelector("b").textContent = String(value);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/telemetry/`);
    socket.onopen = () => {
      delay = 500;
      badge.textContent = "live";
      badge.className = "badge live";
      socket.send(JSON.stringify({ type: "subscribe", devices: "*" }));
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "readings") show(frame.device, frame.readings);
    };
    socket.onclose = () => {
      badge.textContent = "reconnecting…";
      badge.className = "badge down";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }

  connect();
})();
