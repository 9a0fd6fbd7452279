// The operations dashboard: a region's roads on a canvas, its drivers and active orders on an
// SVG layer above, and the KPIs beside, all fed by GET /api/ops/roads/{region}/network and the
// WS /ws/ops/live snapshots. window.__ontheway holds what is shown (for people and tests).
"use strict";

(function () {
  const O = window.OnTheWay;
  const CLASS_STYLE = {
    motorway: [3.2, "#d9a441"], trunk: [3, "#d9a441"], primary: [2.4, "#c9ccd3"],
    secondary: [2, "#c9ccd3"], tertiary: [1.6, "#d3d6dc"],
  };
  const FINAL_CLOSE = { 4401: "the token was refused", 4403: "this token may not watch the region",
    4404: "no such region", 4422: "the request was refused" };

  const state = (window.__ontheway = {
    region: null, roads: null, snapshots: 0, drivers: {}, orders: {}, kpis: null,
    connection: "idle", errors: [],
  });
  const map = document.getElementById("map");
  const canvas = document.getElementById("roads");
  const overlay = document.getElementById("overlay");
  const driverLayer = document.getElementById("drivers");
  const orderLayer = document.getElementById("orders");
  const select = document.getElementById("region");
  let view = null;
  let network = null;
  let socket = null;
  let latest = null;
  const markers = new Map();
  const token = O.readToken();

  const notice = O.notice;
  function connection(name, text) {
    O.connection(state, name, text);
  }

  function sizeView() {
    const box = map.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(box.width * ratio);
    canvas.height = Math.round(box.height * ratio);
    if (view) view.resize(box.width, box.height);
  }

  function drawRoads() {
    const ctx = canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!network || !view) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.lineCap = "round";
    // nodes: [lat, lng, lat, lng, ...]; segments: [a, b, class, a, b, class, ...].
    const nodes = network.nodes;
    const segments = network.segments;
    const xy = new Float64Array(nodes.length);
    for (let i = 0; i < nodes.length; i += 2) {
      const p = view.point(nodes[i], nodes[i + 1]);
      xy[i] = p[0];
      xy[i + 1] = p[1];
    }
    // Least important first, so that main roads are drawn over side streets.
    for (let c = network.classes.length - 1; c >= 0; c--) {
      const base = network.classes[c].replace(/_link$/, "");
      const style = CLASS_STYLE[base] || [1, "#dfe2e7"];
      ctx.lineWidth = style[0] * Math.min(2, Math.sqrt(view.zoom));
      ctx.strokeStyle = style[1];
      ctx.beginPath();
      for (let s = 0; s < segments.length; s += 3) {
        if (segments[s + 2] !== c) continue;
        const a = 2 * segments[s];
        const b = 2 * segments[s + 1];
        ctx.moveTo(xy[a], xy[a + 1]);
        ctx.lineTo(xy[b], xy[b + 1]);
      }
      ctx.stroke();
    }
    state.roads = { segments: segments.length / 3, nodes: nodes.length / 2,
      import_id: network.import_id, zoom: view.zoom };
  }

  function placeDriver(marker, lat, lng) {
    const p = view.point(lat, lng);
    marker.style.transform = "translate(" + p[0].toFixed(1) + "px," + p[1].toFixed(1) + "px)";
  }

  function drawDrivers(drivers) {
    const seen = new Set();
    state.drivers = {};
    for (const d of drivers) {
      const id = d[0], lat = d[1], lng = d[2], status = d[3];
      seen.add(id);
      state.drivers[id] = { lat: lat, lng: lng, status: status };
      let marker = markers.get(id);
      if (!marker) {
        marker = O.svg("circle", { r: 6, cx: 0, cy: 0, "data-driver-id": id });
        marker.appendChild(O.svg("title", {}));
        driverLayer.appendChild(marker);
        markers.set(id, marker);
      }
      marker.setAttribute("class", "driver " + status);
      marker.dataset.status = status;
      marker.dataset.lat = lat;
      marker.dataset.lng = lng;
      marker.firstChild.textContent = id + " (" + status + ")";
      placeDriver(marker, lat, lng);
    }
    for (const [id, marker] of markers) {
      if (!seen.has(id)) {
        marker.remove();
        markers.delete(id);
      }
    }
  }

  function drawOrders(orders) {
    orderLayer.replaceChildren();
    state.orders = {};
    for (const o of orders) {
      state.orders[o.order_id] = o;
      const a = view.point(o.restaurant[0], o.restaurant[1]);
      const b = view.point(o.customer[0], o.customer[1]);
      const group = O.svg("g", { class: "order " + o.status, "data-order-id": o.order_id });
      group.appendChild(O.svg("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }));
      group.appendChild(O.svg("circle", { class: "restaurant", cx: a[0], cy: a[1], r: 2.5 }));
      group.appendChild(O.svg("circle", { class: "customer", cx: b[0], cy: b[1], r: 2.5 }));
      const title = O.svg("title", {});
      title.textContent = o.order_id + ": " + o.status + (o.driver_id ? " (" + o.driver_id + ")" : "");
      group.appendChild(title);
      orderLayer.appendChild(group);
    }
  }

  function showKpis(kpis) {
    state.kpis = kpis;
    for (const key in kpis) {
      const cell = document.getElementById("kpi-" + key);
      if (!cell) continue;
      const value = kpis[key];
      cell.textContent = value === null ? "–" : key.endsWith("_s") ? value.toFixed(1) + " s" : value;
    }
    const today = document.getElementById("orders-today");
    today.replaceChildren();
    const statuses = Object.keys(kpis.orders_today).sort();
    if (!statuses.length) today.textContent = "no orders yet today";
    for (const status of statuses) {
      const row = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = status.replace(/_/g, " ");
      dd.textContent = kpis.orders_today[status];
      row.append(dt, dd);
      today.appendChild(row);
    }
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  }

  function render() {
    if (!view) return;
    drawRoads();
    if (latest) {
      drawOrders(latest.orders);
      drawDrivers(latest.drivers);
    }
  }

  function onSnapshot(message) {
    latest = message;
    state.snapshots += 1;
    if (view) {
      drawOrders(message.orders);
      drawDrivers(message.drivers);
    }
    showKpis(message.kpis);
  }

  function watch(region) {
    if (socket) {
      socket.onclose = null;
      socket.close();
    }
    const ws = new WebSocket(O.socketUrl("/ws/ops/live", { region: region, token: token }));
    socket = ws;
    connection("idle", "connecting…");
    ws.onopen = function () { connection("live", "live: " + region); };
    ws.onmessage = function (event) {
      const message = JSON.parse(event.data);
      if (message.type === "snapshot") onSnapshot(message);
      else if (message.type === "error") {
        state.errors.push(message.error);
        connection("error", message.error.message);
      }
    };
    ws.onclose = function (event) {
      if (socket !== ws) return;
      if (FINAL_CLOSE[event.code]) {
        connection("error", FINAL_CLOSE[event.code]);
        return;
      }
      connection("error", "disconnected; reconnecting…");
      setTimeout(function () { if (socket === ws) watch(region); }, 2000);
    };
  }

  async function choose(region) {
    state.region = region;
    state.roads = null;
    latest = null;
    network = null;
    markers.clear();
    driverLayer.replaceChildren();
    orderLayer.replaceChildren();
    notice("");
    const info = regions.find(function (r) { return r.region === region; });
    try {
      network = await O.api("/api/ops/roads/" + encodeURIComponent(region) + "/network", token);
    } catch (error) {
      if (error.status !== 404) throw error;
      notice(error.message);  // names the import command
    }
    if (state.region !== region) return;  // another region was chosen meanwhile
    const box = map.getBoundingClientRect();
    view = new O.View((network && network.bbox) || info.bbox, box.width, box.height);
    sizeView();
    render();
    watch(region);
  }

  let regions = [];

  async function start() {
    O.interact(map, function () { return view; }, render);
    window.addEventListener("resize", function () { sizeView(); render(); });
    if (!token) {
      notice("Open this page with an ops token: /#token=<token> " +
        "(ontheway token --role ops --sub ops_1, or the URL `ontheway serve` prints).");
      return;
    }
    const allowed = O.claims(token).regions;
    regions = (await O.api("/api/regions", token)).filter(function (r) {
      return !allowed || allowed.indexOf(r.region) >= 0;
    });
    for (const r of regions) {
      const option = document.createElement("option");
      option.value = r.region;
      option.textContent = r.name + " (" + r.region + ")";
      select.appendChild(option);
    }
    const wanted = O.fragment().get("region") || localStorage.getItem("ontheway-region");
    select.value = regions.some(function (r) { return r.region === wanted; })
      ? wanted : regions[0].region;
    select.addEventListener("change", function () {
      localStorage.setItem("ontheway-region", select.value);
      choose(select.value).catch(fail);
    });
    await choose(select.value);
  }

  function fail(error) {
    state.errors.push(String(error.message || error));
    notice(error.message || String(error));
    connection("error", "error");
  }

  start().catch(fail);
})();
