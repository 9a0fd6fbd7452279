// A customer's tracking page: the order's route from the restaurant to the door, the driver
// moving along it, the status and the estimate, from GET /api/orders/{id}, GET /api/route and
// WS /ws/orders/{id}/track. window.__ontheway holds what is shown (for people and tests).
"use strict";

(function () {
  const O = window.OnTheWay;
  const FINAL_CLOSE = { 4401: "the token was refused", 4403: "this is not your order",
    4404: "no such order" };
  const orderId = decodeURIComponent(window.location.pathname.split("/").pop());
  const token = O.readToken();
  const state = (window.__ontheway = {
    order_id: orderId, status: null, eta: null, driver: null, route: null, messages: 0,
    connection: "idle", errors: [],
  });
  const map = document.getElementById("map");
  const driver = document.getElementById("driver");
  let view = null;
  let order = null;

  const notice = O.notice;
  function connection(name, text) {
    O.connection(state, name, text);
  }

  function log(text) {
    const item = document.createElement("li");
    item.textContent = new Date().toLocaleTimeString() + " — " + text;
    document.getElementById("log").prepend(item);
  }

  function showStatus(status) {
    state.status = status;
    const el = document.getElementById("status");
    el.textContent = status.replace(/_/g, " ");
    el.dataset.status = status;
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // The estimate, and its 10-90 % window when the server sent one (earliest, latest).
  function showEta(iso, earliest, latest) {
    state.eta = iso;
    const el = document.getElementById("eta");
    if (!iso) { el.textContent = "–"; return; }
    const minutes = Math.max(0, Math.round((new Date(iso) - Date.now()) / 60000));
    const range = earliest && latest ? ", between " + clock(earliest) + " and " + clock(latest) : "";
    el.textContent = clock(iso) + " (in " + minutes + " min" + range + ")";
    el.dataset.eta = iso;
  }

  // A view of the route, and of the driver when there is one.
  function fit() {
    const points = state.route.points.slice();
    if (state.driver) points.push([state.driver.lat, state.driver.lng]);
    const box = map.getBoundingClientRect();
    view = new O.View(O.boxOf(points), box.width, box.height);
    view.zoom = 0.85;
  }

  function render() {
    if (!view) return;
    const points = state.route.points.map(function (p) { return view.point(p[0], p[1]).join(","); });
    document.getElementById("route").setAttribute("points", points.join(" "));
    const places = document.getElementById("places");
    places.replaceChildren();
    [["restaurant", order.restaurant_location], ["customer", order.customer_location]].forEach(
      function (pair) {
        const p = view.point(pair[1].lat, pair[1].lng);
        places.appendChild(O.svg("circle", { class: "place " + pair[0], cx: p[0], cy: p[1], r: 7 }));
        const label = O.svg("text", { class: "label", x: p[0] + 10, y: p[1] + 4 });
        label.textContent = pair[0] === "restaurant" ? "restaurant" : "you";
        places.appendChild(label);
      }
    );
    if (state.driver) placeDriver();
  }

  function moveDriver(lat, lng) {
    state.driver = { lat: lat, lng: lng };
    driver.dataset.lat = lat;
    driver.dataset.lng = lng;
    if (!view) return;
    const p = view.point(lat, lng);
    if (p[0] < 0 || p[1] < 0 || p[0] > view.width || p[1] > view.height) {
      fit();  // the driver is out of sight: show the route and the driver together
      render();
    } else {
      placeDriver();
    }
  }

  function placeDriver() {
    const p = view.point(state.driver.lat, state.driver.lng);
    driver.style.transform = "translate(" + p[0].toFixed(1) + "px," + p[1].toFixed(1) + "px)";
    if (driver.getAttribute("visibility") !== "visible") {
      driver.getBoundingClientRect();  // the first position is shown at once, not slid into
      driver.setAttribute("visibility", "visible");
      driver.classList.add("placed");
    }
  }

  function onMessage(message) {
    state.messages += 1;
    if (message.type === "status") {
      if (message.status !== state.status) log("status: " + message.status.replace(/_/g, " "));
      showStatus(message.status);
    } else if (message.type === "driver_location") {
      moveDriver(message.lat, message.lng);
    } else if (message.type === "eta") {
      showEta(message.estimated_delivery, message.earliest, message.latest);
      log("new estimate");
    } else if (message.type === "notification") {
      log(message.title || message.body || message.kind || "notification");
    } else if (message.type === "error") {
      state.errors.push(message.error);
      notice(message.error.message);
    }
  }

  function follow() {
    const ws = new WebSocket(O.socketUrl("/ws/orders/" + encodeURIComponent(orderId) + "/track",
      { token: token }));
    connection("idle", "connecting…");
    ws.onopen = function () { connection("live", "live"); };
    ws.onmessage = function (event) { onMessage(JSON.parse(event.data)); };
    ws.onclose = function (event) {
      if (FINAL_CLOSE[event.code]) { connection("error", FINAL_CLOSE[event.code]); return; }
      if (state.status === "delivered" || state.status === "cancelled") {
        connection("idle", "finished");
        return;
      }
      connection("error", "disconnected; reconnecting…");
      setTimeout(follow, 2000);
    };
  }

  async function start() {
    document.getElementById("order-id").textContent = orderId;
    O.interact(map, function () { return view; }, render);
    window.addEventListener("resize", function () {
      const box = map.getBoundingClientRect();
      if (view) view.resize(box.width, box.height);
      render();
    });
    if (!token) {
      notice("Open this page with your token: /track/" + orderId + "#token=<token>");
      return;
    }
    order = await O.api("/api/orders/" + encodeURIComponent(orderId), token);
    showStatus(order.status);
    showEta(order.estimated_delivery);
    const from = order.restaurant_location;
    const to = order.customer_location;
    let points = [[from.lat, from.lng], [to.lat, to.lng]];
    let kind = "straight";
    try {
      const route = await O.api("/api/route?" + new URLSearchParams({
        from: from.lat + "," + from.lng, to: to.lat + "," + to.lng }), token);
      if (route.geometry && route.geometry.length > 1) {
        // The route runs between the roads nearest to the two ends: join the ends to it.
        points = [points[0]].concat(route.geometry, [points[1]]);
        kind = "road";
      }
    } catch (error) {
      kind = "straight";  // no road map here: the straight line still shows where it goes
    }
    state.route = { kind: kind, points: points };
    fit();
    render();
    follow();
  }

  start().catch(function (error) {
    state.errors.push(String(error.message || error));
    notice(error.message || String(error));
    connection("error", "error");
  });
})();
