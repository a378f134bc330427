/*!
 * Payment gateway checkout SDK. One dependency-free file, served at /checkout.js.
 *
 *   <script src="https://gateway.example/checkout.js"></script>
 *   new PaymentGateway({key, orderId, onSuccess, onFailure, onClose}).open();
 *
 * Options also: name, description, prefill: {vpa}, loadTimeout (ms before "could not load").
 * While a payment is in flight, closing asks first; closed anyway, the SDK follows the payment
 * itself and still calls onSuccess or onFailure once it settles.
 *
 * The gateway's origin is taken from this script's own src, so the SDK works on any host and port.
 * The checkout runs in an iframe; its messages are accepted only when they come from the gateway's
 * origin AND from this SDK's own iframe, and the iframe posts only to this page's origin.
 */
(function (window, document) {
  "use strict";

  if (window.PaymentGateway) return; // included twice: keep the first

  var script = document.currentScript;
  if (!script) {
    var scripts = document.getElementsByTagName("script");
    for (var i = scripts.length - 1; i >= 0; i--) {
      if (/\/checkout\.js(?:[?#]|$)/.test(scripts[i].src)) { script = scripts[i]; break; }
    }
  }
  var GATEWAY_ORIGIN = script ? new URL(script.src, window.location.href).origin : window.location.origin;
  var MODAL_ID = "payment-gateway-modal";
  var POLL_MS = 2000;
  var FOLLOW_FOR_MS = 10 * 60 * 1000; // as long as the checkout page itself waits
  var LOAD_TIMEOUT_MS = 15000;
  var SEND_WAIT_MS = 30000; // a closed modal's checkout waits this long for the answer naming its payment
  var SETTLED = {success: true, failed: true};
  var active = null; // the one open instance

  function css(el, styles) {
    // Properties set through the CSSOM are allowed by a merchant's Content-Security-Policy.
    for (var k in styles) if (Object.prototype.hasOwnProperty.call(styles, k)) el.style[k] = styles[k];
    return el;
  }

  function call(fn, arg) {
    if (typeof fn !== "function") return;
    try {
      fn(arg);
    } catch (e) {
      // A merchant callback that throws must not leave the modal half closed; report it async.
      window.setTimeout(function () { throw e; }, 0);
    }
  }

  function str(value) { return typeof value === "string" ? value : null; }

  function el(tag, styles, attrs, text) {
    var node = css(document.createElement(tag), styles || {});
    for (var k in attrs || {}) if (Object.prototype.hasOwnProperty.call(attrs, k)) node.setAttribute(k, attrs[k]);
    if (text) node.textContent = text;
    return node;
  }

  var BUTTON = {
    display: "block", width: "100%", minHeight: "44px", margin: "8px 0 0", padding: "10px 16px",
    borderRadius: "8px", font: "600 16px/1.4 system-ui, sans-serif", cursor: "pointer", boxSizing: "border-box"
  };

  function button(label, testId, primary) {
    var b = el("button", BUTTON, {type: "button", "data-test-id": testId}, label);
    return css(b, primary ? {background: "#3730a3", color: "#ffffff", border: "1px solid #3730a3"}
                          : {background: "#ffffff", color: "#0f172a", border: "1px solid #94a3b8"});
  }

  // A panel over the checkout area (loader, load error, confirm dialog): the SDK's own DOM, on the
  // merchant's page, styled through the CSSOM only.
  function panel(attrs) {
    return el("div", {
      position: "absolute", top: "48px", right: "0", bottom: "0", left: "0", display: "flex",
      flexDirection: "column", alignItems: "center", justifyContent: "center", padding: "24px",
      background: "#ffffff", color: "#0f172a", font: "400 16px/1.5 system-ui, sans-serif", textAlign: "center",
      boxSizing: "border-box"
    }, attrs);
  }

  function sentinel(onFocus) {
    // Tab past the last control (or Shift+Tab before the first) lands here and is sent back around.
    var s = el("span", {position: "absolute", width: "1px", height: "1px", overflow: "hidden"}, {tabindex: "0"});
    s.addEventListener("focus", onFocus);
    return s;
  }

  function PaymentGateway(options) {
    if (!(this instanceof PaymentGateway)) return new PaymentGateway(options);
    options = options || {};
    if (!options.orderId) throw new Error("PaymentGateway: orderId is required");
    this.options = options;
    this._modal = null;
    this._iframe = null;
    this._onMessage = this._handleMessage.bind(this);
    this._onKeydown = this._handleKeydown.bind(this);
    this._onFocusin = this._handleFocusin.bind(this);
    this._payment = null;  // {paymentId, orderId, status} once the checkout has started one
    this._submitting = false; // the checkout has sent a payment and not yet heard its id
    this._closedWaiting = []; // closed modals kept out of sight until that id comes: {overlay, iframe, last, timer}
    this._done = false;    // true once onSuccess, or a closed modal's onFailure, has been called
    this._following = {}; // paymentId -> true while the SDK polls that payment itself
  }

  PaymentGateway.gatewayOrigin = GATEWAY_ORIGIN;

  PaymentGateway.prototype.checkoutUrl = function () {
    var params = new URLSearchParams({order_id: String(this.options.orderId), embedded: "true"});
    if (this.options.key) params.set("key", String(this.options.key));
    // Where the iframe may post its result: this page's origin, checked again by the server.
    params.set("parent_origin", window.location.origin);
    var o = this.options;
    if (typeof o.name === "string") params.set("name", o.name);
    if (typeof o.description === "string") params.set("description", o.description);
    if (o.prefill && typeof o.prefill.vpa === "string") params.set("prefill[vpa]", o.prefill.vpa);
    return GATEWAY_ORIGIN + "/checkout?" + params.toString();
  };

  PaymentGateway.prototype.open = function () {
    if (this._modal) return this;
    if (active && active !== this) active.close();
    var existing = document.getElementById(MODAL_ID);
    if (existing) existing.parentNode.removeChild(existing);

    var overlay = el("div", {
      position: "fixed", top: "0", right: "0", bottom: "0", left: "0", zIndex: "2147483000",
      display: "flex", alignItems: "center", justifyContent: "center", margin: "0", padding: "0",
      background: "rgba(15, 23, 42, 0.6)", boxSizing: "border-box"
    }, {id: MODAL_ID, "data-test-id": "payment-modal", role: "dialog", "aria-modal": "true",
        "aria-label": "Secure payment"});

    var small = window.innerWidth < 520;
    var box = el("div", {
      position: "relative", display: "flex", flexDirection: "column", boxSizing: "border-box",
      width: small ? "100%" : "460px", height: small ? "100%" : "min(720px, calc(100% - 32px))",
      background: "#ffffff", borderRadius: small ? "0" : "12px", overflow: "hidden",
      boxShadow: "0 20px 60px rgba(0, 0, 0, 0.35)"
    });

    var bar = el("div", {
      display: "flex", alignItems: "center", justifyContent: "flex-end", flex: "0 0 auto",
      height: "48px", padding: "0 4px", borderBottom: "1px solid #e2e8f0", background: "#ffffff"
    });
    var closeButton = el("button", {
      width: "44px", height: "44px", padding: "0", margin: "0", border: "0", borderRadius: "8px",
      background: "transparent", color: "#0f172a", font: "400 28px/44px system-ui, sans-serif",
      cursor: "pointer"
    }, {type: "button", "data-test-id": "close-modal-button", "aria-label": "Close payment window"}, "\u00d7");
    closeButton.addEventListener("click", this._requestClose.bind(this));

    var iframe = el("iframe", {
      display: "block", flex: "1 1 auto", width: "100%", height: "100%", border: "0", margin: "0",
      visibility: "hidden" // until the checkout says it is ready; the loader shows instead
    }, {"data-test-id": "payment-iframe", title: "Payment checkout", referrerpolicy: "origin"});
    iframe.src = this.checkoutUrl();

    var loader = panel({"data-test-id": "modal-loader", role: "status"});
    loader.appendChild(el("p", {margin: "0", fontWeight: "600"}, null, "Loading secure checkout\u2026"));

    var self = this;
    bar.appendChild(closeButton);
    box.appendChild(sentinel(function () {
      // Shift+Tab from the close button: on to the checkout's last control.
      if (self._confirm) return self._confirm.querySelector("button:last-child").focus();
      // Not loaded: the load error's Close button, when it shows, is the last control.
      if (!self._ready) return (self._loader.querySelector("button") || closeButton).focus();
      self._iframe.focus();
      self._iframe.contentWindow.postMessage({type: "focus_last"}, GATEWAY_ORIGIN);
    }));
    box.appendChild(bar);
    box.appendChild(iframe);
    box.appendChild(loader);
    var end = sentinel(function () {
      if (self._confirm) return self._confirm.querySelector("button").focus();
      closeButton.focus();
    });
    box.appendChild(end);
    overlay.appendChild(box);

    this._modal = overlay;
    this._iframe = iframe;
    this._closeButton = closeButton;
    this._box = box;
    this._bar = bar;
    this._end = end;
    this._loader = loader;
    this._ready = false;
    this._confirm = null;
    this._submitting = false;
    // Reopened while a closed modal's payment is still followed: that payment stays the one in flight.
    if (!this._isFollowing()) {
      this._payment = null;
      this._done = false;
    }
    var timeout = typeof this.options.loadTimeout === "number" ? this.options.loadTimeout : LOAD_TIMEOUT_MS;
    this._loadTimer = window.setTimeout(this._loadFailed.bind(this), timeout);
    this._previousFocus = document.activeElement;
    this._previousOverflow = document.documentElement.style.overflow;
    active = this;

    window.addEventListener("message", this._onMessage);
    document.addEventListener("keydown", this._onKeydown, true);
    document.addEventListener("focusin", this._onFocusin, true);
    document.documentElement.style.overflow = "hidden"; // no page scrolling behind the modal
    document.body.appendChild(overlay);
    closeButton.focus();
    return this;
  };

  PaymentGateway.prototype._loadFailed = function () {
    if (!this._modal || this._ready) return;
    var loader = this._loader;
    loader.setAttribute("data-test-id", "modal-load-error");
    loader.setAttribute("role", "alert");
    loader.textContent = "";
    loader.appendChild(el("p", {margin: "0", fontWeight: "700", fontSize: "18px"}, null, "The checkout could not be loaded"));
    loader.appendChild(el("p", {margin: "8px 0 0"}, null,
                          "Check your connection and try again. No payment was made."));
    var close = button("Close", "modal-load-error-close", true);
    css(close, {maxWidth: "240px", marginTop: "16px"});
    close.addEventListener("click", this.close.bind(this));
    loader.appendChild(close);
    close.focus();
  };

  PaymentGateway.prototype._inFlight = function () {
    return this._submitting || !!(this._payment && this._payment.paymentId && !SETTLED[this._payment.status]);
  };

  // ×, Escape, or the checkout's own Cancel/Close: with a payment in flight, ask first.
  PaymentGateway.prototype._requestClose = function () {
    if (!this._modal) return;
    if (!this._inFlight()) return this.close();
    if (this._confirm) return this._confirm.querySelector("button").focus();
    var dialog = panel({"data-test-id": "confirm-close-dialog", role: "alertdialog", "aria-modal": "true",
                        "aria-labelledby": "pg-confirm-title", "aria-describedby": "pg-confirm-text"});
    var title = el("h2", {margin: "0", fontSize: "20px"}, {id: "pg-confirm-title"}, "Your payment is still processing");
    var text = el("p", {margin: "8px 0 8px", maxWidth: "340px"}, {id: "pg-confirm-text"},
                  "If you close this window the payment still completes, and the shop is told the result. " +
                  "Please do not pay again.");
    var stay = button("Keep waiting", "cancel-close-button", true);
    var leave = button("Close anyway", "confirm-close-button", false);
    css(stay, {maxWidth: "280px"});
    css(leave, {maxWidth: "280px"});
    stay.addEventListener("click", this._dismissConfirm.bind(this));
    leave.addEventListener("click", this.close.bind(this));
    dialog.appendChild(title);
    dialog.appendChild(text);
    dialog.appendChild(stay);
    dialog.appendChild(leave);
    this._box.insertBefore(dialog, this._end);
    this._confirm = dialog;
    // Only the question can be reached while it is asked: Tab cycles between its two answers.
    this._bar.inert = this._iframe.inert = true;
    stay.focus();
  };

  PaymentGateway.prototype._isFollowing = function () {
    for (var id in this._following) if (Object.prototype.hasOwnProperty.call(this._following, id)) return true;
    return false;
  };

  PaymentGateway.prototype._dismissConfirm = function () {
    if (!this._confirm) return;
    this._confirm.parentNode.removeChild(this._confirm);
    this._confirm = null;
    this._bar.inert = this._iframe.inert = false;
    if (this._closeButton) this._closeButton.focus();
  };

  // The modal is gone but the payment is not settled: ask the gateway until it is, for as long as
  // the checkout page itself would wait. The order and payment ids together are what the status
  // endpoint needs; it tells nothing else.
  PaymentGateway.prototype._follow = function (payment) {
    var self = this, id = payment.paymentId, startedAt = Date.now();
    if (this._following[id]) return; // closed twice over the same payment: one poller is enough
    this._following[id] = true;
    var url = GATEWAY_ORIGIN + "/checkout/orders/" + encodeURIComponent(payment.orderId) + "/payments/" +
              encodeURIComponent(id);
    function stop() { delete self._following[id]; }
    function again() {
      if (!self._done && Date.now() - startedAt < FOLLOW_FOR_MS) window.setTimeout(ask, POLL_MS);
      else stop();
    }
    function ask() {
      if (self._done) return stop();
      fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store", credentials: "omit", mode: "cors"})
        .then(function (r) {
          // A 4xx other than 429 will not change by asking again (a payment that is not there).
          if (r.status >= 400 && r.status < 500 && r.status !== 429) return stop();
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json().then(function (body) {
            if (!SETTLED[body.status]) return again();
            stop();
            var success = body.status === "success";
            self._settled(success ? "payment_success" : "payment_failed", body);
            // Reopened meanwhile: the order is paid, so the modal goes as after any success.
            if (success && self._modal) self.close();
          });
        })
        .catch(again); // network hiccups and 5xx are retried
    }
    window.setTimeout(ask, POLL_MS);
  };

  PaymentGateway.prototype._settled = function (type, raw) {
    if (this._done) return;
    var data = {paymentId: str(raw.paymentId), orderId: str(raw.orderId), status: str(raw.status)};
    // The followed payment may be the one a reopened modal still counts as in flight.
    if (this._payment && this._payment.paymentId === data.paymentId) this._payment.status = data.status;
    if (type === "payment_success") {
      if (typeof raw.signature === "string") data.signature = raw.signature;
      this._done = true;
      call(this.options.onSuccess, data);
    } else {
      var error = raw.error && typeof raw.error === "object" ? raw.error : {};
      data.error = {code: str(error.code) || "PAYMENT_FAILED",
                    description: str(error.description) || "The payment could not be completed."};
      // Open, the shopper may try again, so only a closed modal's failure is final.
      if (!this._modal) this._done = true;
      // A question about closing a payment "still processing" is out of date once it has failed.
      else this._dismissConfirm();
      call(this.options.onFailure, data);
    }
  };

  PaymentGateway.prototype.close = function () {
    if (!this._modal) return this;
    var sending = this._submitting;
    window.clearTimeout(this._loadTimer);
    // A hidden modal still waiting for its answer keeps listening, whichever modal closes now.
    if (!sending && !this._closedWaiting.length) window.removeEventListener("message", this._onMessage);
    document.removeEventListener("keydown", this._onKeydown, true);
    document.removeEventListener("focusin", this._onFocusin, true);
    if (sending) {
      // The payment is sent but its id not known yet: the modal leaves the screen while its checkout
      // stays loaded, out of sight, until the answer names the payment for onClose and the polling.
      css(this._modal, {display: "none"});
      // Its ids and test ids now belong to a reopened modal: the page has each of them once.
      var named = [this._modal].concat(
        Array.prototype.slice.call(this._modal.querySelectorAll("[id], [data-test-id]")));
      named.forEach(function (node) { node.removeAttribute("id"); node.removeAttribute("data-test-id"); });
      // Its last payment (an earlier attempt) is what onClose carries should this one not be made.
      var waiting = {overlay: this._modal, iframe: this._iframe, last: this._payment};
      waiting.timer = window.setTimeout(this._sent.bind(this, waiting, null), SEND_WAIT_MS);
      this._closedWaiting.push(waiting);
      this._submitting = false;
    } else if (this._modal.parentNode) {
      this._modal.parentNode.removeChild(this._modal);
    }
    document.documentElement.style.overflow = this._previousOverflow;
    this._modal = this._iframe = this._closeButton = this._box = this._bar = this._end = this._loader = null;
    this._confirm = null;
    if (active === this) active = null;
    var previous = this._previousFocus;
    this._previousFocus = null;
    if (previous && typeof previous.focus === "function" && document.contains(previous)) previous.focus();
    if (!sending) this._closed(this._payment); // else onClose when the answer comes (_sent)
    return this;
  };

  // onClose with the payment a closed modal leaves, if any; the SDK follows it until it settles.
  PaymentGateway.prototype._closed = function (payment) {
    call(this.options.onClose, payment ? {paymentId: payment.paymentId, orderId: payment.orderId,
                                          status: payment.status} : undefined);
    if (payment && !SETTLED[payment.status] && !this._done) this._follow(payment);
  };

  // The answer for a modal closed while its payment was being sent: the payment made, or null (none
  // was, or no answer in time). Now onClose can carry it, and the SDK follows it as after any close.
  PaymentGateway.prototype._sent = function (waiting, payment) {
    var index = this._closedWaiting.indexOf(waiting);
    if (index < 0) return;
    this._closedWaiting.splice(index, 1);
    window.clearTimeout(waiting.timer);
    if (waiting.overlay.parentNode) waiting.overlay.parentNode.removeChild(waiting.overlay);
    if (!this._modal && !this._closedWaiting.length) window.removeEventListener("message", this._onMessage);
    if (payment && !this._modal) this._payment = payment; // a reopened modal keeps its own
    this._closed(payment || waiting.last);
  };

  PaymentGateway.prototype.isOpen = function () { return !!this._modal; };

  PaymentGateway.prototype._handleKeydown = function (event) {
    if (event.key === "Escape" || event.key === "Esc") {
      event.preventDefault();
      if (this._confirm) this._dismissConfirm();
      else this._requestClose();
    }
  };

  PaymentGateway.prototype._handleFocusin = function (event) {
    // Keep keyboard focus inside the dialog while it is open (inside the question when it is asked).
    if (!this._modal) return;
    if (this._confirm && !this._confirm.contains(event.target)) this._confirm.querySelector("button").focus();
    else if (!this._modal.contains(event.target)) this._closeButton.focus();
  };

  PaymentGateway.prototype._handleMessage = function (event) {
    // Only the gateway, and only through this SDK's own iframe: a script on the merchant page, a
    // browser extension or another frame cannot fake a payment result.
    if (event.origin !== GATEWAY_ORIGIN) return;
    var waiting = this._closedWaiting.filter(function (w) { return event.source === w.iframe.contentWindow; })[0];
    if (!waiting && (!this._iframe || event.source !== this._iframe.contentWindow)) return;
    var message = event.data;
    if (!message || typeof message !== "object" || typeof message.type !== "string") return;
    var raw = message.data && typeof message.data === "object" ? message.data : {};
    var data = {paymentId: str(raw.paymentId), orderId: str(raw.orderId), status: str(raw.status)};
    if (data.orderId && data.orderId !== String(this.options.orderId)) return;
    if (waiting) {
      if (message.type === "payment_started" && data.paymentId) {
        this._sent(waiting, {paymentId: data.paymentId, orderId: String(this.options.orderId),
                             status: data.status || "pending"});
      } else if (message.type === "payment_not_started") {
        this._sent(waiting, null);
      }
      return;
    }

    if (message.type === "checkout_ready") {
      this._ready = true;
      window.clearTimeout(this._loadTimer);
      if (this._loader && this._loader.parentNode) this._loader.parentNode.removeChild(this._loader);
      css(this._iframe, {visibility: "visible"});
    } else if (message.type === "payment_submitting") {
      this._submitting = true;
    } else if (message.type === "payment_not_started") {
      this._submitting = false;
      if (!this._inFlight()) this._dismissConfirm(); // nothing in flight: the question is out of date
    } else if (message.type === "payment_started") {
      this._submitting = false;
      if (data.paymentId) this._payment = {paymentId: data.paymentId, orderId: String(this.options.orderId),
                                           status: data.status || "pending"};
    } else if (message.type === "payment_success" || message.type === "payment_failed") {
      if (data.paymentId) this._payment = {paymentId: data.paymentId, orderId: String(this.options.orderId),
                                           status: message.type === "payment_success" ? "success" : "failed"};
      this._settled(message.type, raw);
      if (message.type === "payment_success") this.close(); // a failure stays open: the shopper may retry
    } else if (message.type === "close_modal") {
      this._requestClose();
    }
  };

  window.PaymentGateway = PaymentGateway;
})(window, document);
