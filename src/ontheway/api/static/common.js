// Shared by the dashboard and the tracking page: the token, the API, and the map projection.
"use strict";

window.OnTheWay = (function () {
  // The token travels in the URL fragment (#token=...), which browsers never send to a
  // server; it is kept for the tab's life so that a reload keeps working.
  function fragment() {
    return new URLSearchParams(window.location.hash.replace(/^#/, ""));
  }

  function readToken() {
    const fromUrl = fragment().get("token");
    if (fromUrl) {
      sessionStorage.setItem("ontheway-token", fromUrl);
      return fromUrl;
    }
    return sessionStorage.getItem("ontheway-token");
  }

  // The token's claims, unverified (the server verifies): to list the regions it covers.
  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (e) {
      return {};
    }
  }

  async function api(path, token) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + token } });
    const body = await response.json().catch(function () { return null; });
    if (!response.ok) {
      const error = new Error(
        (body && body.error && body.error.message) || "HTTP " + response.status
      );
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function socketUrl(path, params) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + path + "?" + new URLSearchParams(params);
  }

  // An equirectangular projection around the box's centre (longitudes shrunk by the cosine
  // of the latitude, so that a city keeps its shape), fitted into a width x height view,
  // with a zoom factor and a pan offset in pixels on top.
  function View(bbox, width, height) {
    this.lat0 = (bbox.min_lat + bbox.max_lat) / 2;
    this.lng0 = (bbox.min_lng + bbox.max_lng) / 2;
    this.k = Math.cos((this.lat0 * Math.PI) / 180);
    this.bbox = bbox;
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.resize(width, height);
  }
  View.prototype.resize = function (width, height) {
    const spanX = Math.max((this.bbox.max_lng - this.bbox.min_lng) * this.k, 1e-6);
    const spanY = Math.max(this.bbox.max_lat - this.bbox.min_lat, 1e-6);
    this.width = width;
    this.height = height;
    this.scale = 0.94 * Math.min(width / spanX, height / spanY);
  };
  View.prototype.point = function (lat, lng) {
    const s = this.scale * this.zoom;
    return [
      this.width / 2 + this.panX + (lng - this.lng0) * this.k * s,
      this.height / 2 + this.panY - (lat - this.lat0) * s,
    ];
  };
  View.prototype.zoomAt = function (factor, x, y) {
    const next = Math.min(64, Math.max(0.5, this.zoom * factor));
    const applied = next / this.zoom;
    this.panX = (this.panX + this.width / 2 - x) * applied + x - this.width / 2;
    this.panY = (this.panY + this.height / 2 - y) * applied + y - this.height / 2;
    this.zoom = next;
  };
  View.prototype.reset = function () {
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
  };

  // Drag to pan, wheel to zoom, double-click to fit: ``changed`` redraws.
  function interact(element, getView, changed) {
    let dragging = null;
    element.addEventListener("wheel", function (event) {
      const view = getView();
      if (!view) return;
      event.preventDefault();
      const box = element.getBoundingClientRect();
      view.zoomAt(Math.exp(-event.deltaY / 400), event.clientX - box.left, event.clientY - box.top);
      changed();
    }, { passive: false });
    element.addEventListener("pointerdown", function (event) {
      dragging = { x: event.clientX, y: event.clientY };
      element.classList.add("panning");
    });
    window.addEventListener("pointermove", function (event) {
      const view = getView();
      if (!dragging || !view) return;
      view.panX += event.clientX - dragging.x;
      view.panY += event.clientY - dragging.y;
      dragging = { x: event.clientX, y: event.clientY };
      changed();
    });
    window.addEventListener("pointerup", function () {
      dragging = null;
      element.classList.remove("panning");
    });
    element.addEventListener("dblclick", function () {
      const view = getView();
      if (!view) return;
      view.reset();
      changed();
    });
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    return node;
  }

  function boxOf(points) {
    const box = { min_lat: 90, min_lng: 180, max_lat: -90, max_lng: -180 };
    points.forEach(function (p) {
      box.min_lat = Math.min(box.min_lat, p[0]);
      box.max_lat = Math.max(box.max_lat, p[0]);
      box.min_lng = Math.min(box.min_lng, p[1]);
      box.max_lng = Math.max(box.max_lng, p[1]);
    });
    return box;
  }

  // The page's banner (hidden when ``text`` is empty) and its connection indicator.
  function notice(text) {
    const box = document.getElementById("notice");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function connection(state, name, text) {
    const el = document.getElementById("connection");
    el.dataset.state = name;
    el.textContent = text;
    state.connection = name;
  }

  return {
    notice: notice,
    connection: connection,
    fragment: fragment,
    readToken: readToken,
    claims: claims,
    api: api,
    socketUrl: socketUrl,
    View: View,
    interact: interact,
    svg: svg,
    boxOf: boxOf,
  };
})();
