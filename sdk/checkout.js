/*!
 * Payment gateway checkout SDK. One dependency-free file, served at /checkout.js.
 *
 *   <script src="https://gateway.example/checkout.js"></script>
 *   new PaymentGateway({key, orderId, onSuccess, onFailure, onClose}).open();
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
  }

  PaymentGateway.gatewayOrigin = GATEWAY_ORIGIN;

  PaymentGateway.prototype.checkoutUrl = function () {
    var params = new URLSearchParams({order_id: String(this.options.orderId), embedded: "true"});
    if (this.options.key) params.set("key", String(this.options.key));
    // Where the iframe may post its result: this page's origin, checked again by the server.
    params.set("parent_origin", window.location.origin);
    return GATEWAY_ORIGIN + "/checkout?" + params.toString();
  };

  PaymentGateway.prototype.open = function () {
    if (this._modal) return this;
    if (active && active !== this) active.close();
    var existing = document.getElementById(MODAL_ID);
    if (existing) existing.parentNode.removeChild(existing);

    var overlay = css(document.createElement("div"), {
      position: "fixed", top: "0", right: "0", bottom: "0", left: "0", zIndex: "2147483000",
      display: "flex", alignItems: "center", justifyContent: "center", margin: "0", padding: "0",
      background: "rgba(15, 23, 42, 0.6)", boxSizing: "border-box"
    });
    overlay.id = MODAL_ID;
    overlay.setAttribute("data-test-id", "payment-modal");
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-modal", "true");
    overlay.setAttribute("aria-label", "Secure payment");

    var small = window.innerWidth < 520;
    var box = css(document.createElement("div"), {
      position: "relative", display: "flex", flexDirection: "column", boxSizing: "border-box",
      width: small ? "100%" : "460px", height: small ? "100%" : "min(720px, calc(100% - 32px))",
      background: "#ffffff", borderRadius: small ? "0" : "12px", overflow: "hidden",
      boxShadow: "0 20px 60px rgba(0, 0, 0, 0.35)"
    });

    var bar = css(document.createElement("div"), {
      display: "flex", alignItems: "center", justifyContent: "flex-end", flex: "0 0 auto",
      height: "48px", padding: "0 4px", borderBottom: "1px solid #e2e8f0", background: "#ffffff"
    });
    var closeButton = css(document.createElement("button"), {
      width: "44px", height: "44px", padding: "0", margin: "0", border: "0", borderRadius: "8px",
      background: "transparent", color: "#0f172a", font: "400 28px/44px system-ui, sans-serif",
      cursor: "pointer"
    });
    closeButton.type = "button";
    closeButton.setAttribute("data-test-id", "close-modal-button");
    closeButton.setAttribute("aria-label", "Close payment window");
    closeButton.textContent = "\u00d7";
    closeButton.addEventListener("click", this.close.bind(this));

    var iframe = css(document.createElement("iframe"), {
      display: "block", flex: "1 1 auto", width: "100%", height: "100%", border: "0", margin: "0"
    });
    iframe.setAttribute("data-test-id", "payment-iframe");
    iframe.setAttribute("title", "Payment checkout");
    iframe.setAttribute("referrerpolicy", "origin");
    iframe.src = this.checkoutUrl();

    bar.appendChild(closeButton);
    box.appendChild(bar);
    box.appendChild(iframe);
    overlay.appendChild(box);

    this._modal = overlay;
    this._iframe = iframe;
    this._closeButton = closeButton;
    this._done = false;
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

  PaymentGateway.prototype.close = function () {
    if (!this._modal) return this;
    window.removeEventListener("message", this._onMessage);
    document.removeEventListener("keydown", this._onKeydown, true);
    document.removeEventListener("focusin", this._onFocusin, true);
    if (this._modal.parentNode) this._modal.parentNode.removeChild(this._modal);
    document.documentElement.style.overflow = this._previousOverflow;
    this._modal = this._iframe = this._closeButton = null;
    if (active === this) active = null;
    var previous = this._previousFocus;
    this._previousFocus = null;
    if (previous && typeof previous.focus === "function" && document.contains(previous)) previous.focus();
    call(this.options.onClose);
    return this;
  };

  PaymentGateway.prototype.isOpen = function () { return !!this._modal; };

  PaymentGateway.prototype._handleKeydown = function (event) {
    if (event.key === "Escape" || event.key === "Esc") {
      event.preventDefault();
      this.close();
    }
  };

  PaymentGateway.prototype._handleFocusin = function (event) {
    // Keep keyboard focus inside the dialog while it is open.
    if (this._modal && !this._modal.contains(event.target)) this._closeButton.focus();
  };

  PaymentGateway.prototype._handleMessage = function (event) {
    // Only the gateway, and only through this SDK's own iframe: a script on the merchant page, a
    // browser extension or another frame cannot fake a payment result.
    if (event.origin !== GATEWAY_ORIGIN) return;
    if (!this._iframe || event.source !== this._iframe.contentWindow) return;
    var message = event.data;
    if (!message || typeof message !== "object" || typeof message.type !== "string") return;
    var raw = message.data && typeof message.data === "object" ? message.data : {};
    var data = {paymentId: str(raw.paymentId), orderId: str(raw.orderId), status: str(raw.status)};
    if (typeof raw.signature === "string") data.signature = raw.signature;
    if (data.orderId && data.orderId !== String(this.options.orderId)) return;

    if (message.type === "payment_success") {
      if (this._done) return;
      this._done = true;
      call(this.options.onSuccess, data);
      this.close();
    } else if (message.type === "payment_failed") {
      call(this.options.onFailure, data); // stays open: the shopper may retry
    } else if (message.type === "close_modal") {
      this.close();
    }
  };

  window.PaymentGateway = PaymentGateway;
})(window, document);
