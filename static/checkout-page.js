/* The checkout page: method choice, client-side checks that mirror the server's (app/validation.py),
 * the payment sent as a JSON POST (card data never goes into a URL), polling every 2 s, and the
 * result. Embedded in the SDK's iframe it also reports to the parent page with postMessage, only
 * ever to the parent's origin (data-parent-origin, validated by the server). */
(function () {
  "use strict";

  var root = document.querySelector('[data-test-id="checkout-container"]');
  if (!root) return;

  var POLL_MS = 2000;
  var POLL_GIVE_UP_MS = (parseInt(root.getAttribute("data-poll-timeout"), 10) || 600) * 1000;
  var embedded = root.getAttribute("data-embedded") === "true";
  var parentOrigin = root.getAttribute("data-parent-origin") || "";
  var orderId = root.getAttribute("data-order-id") || null;
  var current = {paymentId: null, status: null};

  function byTestId(id) { return root.querySelector('[data-test-id="' + id + '"]'); }

  function notifyParent(type, data) {
    if (!embedded || window.parent === window) return;
    if (!parentOrigin) {
      console.warn("checkout: no parent origin known; not reporting " + type);
      return;
    }
    window.parent.postMessage({type: type, data: data}, parentOrigin);
  }

  // The SDK decides: with a payment in flight it asks the shopper before it closes.
  function requestClose() {
    notifyParent("close_modal", {paymentId: current.paymentId, orderId: orderId, status: current.status});
  }

  function tabbables() {
    return Array.prototype.filter.call(
      document.querySelectorAll("a[href], button:not([disabled]), input:not([disabled]):not([type=hidden])"),
      function (el) { return el.getClientRects().length > 0; });
  }

  Array.prototype.forEach.call(root.querySelectorAll('[data-action="close"]'), function (button) {
    button.addEventListener("click", requestClose);
  });
  if (embedded) {
    // Keys typed inside the iframe never reach the merchant page: forward Escape as close_modal.
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") requestClose();
    });
    // The SDK keeps Tab inside its modal: Shift+Tab from its close button lands on our last control.
    window.addEventListener("message", function (event) {
      if (event.source !== window.parent || event.origin !== parentOrigin || !event.data) return;
      var list = tabbables();
      if (event.data.type === "focus_last" && list.length) list[list.length - 1].focus();
    });
    // The SDK shows its loader until this arrives (an error page counts: it has something to say).
    notifyParent("checkout_ready", {orderId: orderId});
  }

  var form = document.getElementById("payment-form");
  if (!form) return; // an error page: nothing more to do

  // ---- client-side checks (the same rules as app/validation.py) --------------------------------

  var VPA_RE = /^[a-zA-Z0-9._-]+@[a-zA-Z0-9]+$/;

  function cardDigits(value) {
    var digits = value.replace(/[ -]/g, "");
    return /^[0-9]+$/.test(digits) ? digits : null;
  }

  function luhnOk(digits) {
    var total = 0;
    for (var i = 0; i < digits.length; i++) {
      var d = digits.charCodeAt(digits.length - 1 - i) - 48;
      if (i % 2) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      total += d;
    }
    return total % 10 === 0;
  }

  function cardNetwork(digits) {
    if (!digits || digits.length < 2) return "";
    var two = parseInt(digits.slice(0, 2), 10), four = parseInt(digits.slice(0, 4), 10);
    if (digits[0] === "4") return "Visa";
    if ((two >= 51 && two <= 55) || (digits.length >= 4 && four >= 2221 && four <= 2720)) return "Mastercard";
    if (two === 34 || two === 37) return "American Express";
    if (two === 60 || two === 65 || (two >= 81 && two <= 89)) return "RuPay";
    return "";
  }

  var AMEX = "American Express";

  function cvvDigits(network) { return network === AMEX ? 4 : 3; }

  // Amex numbers read 4-6-5, the others in fours (up to 19 digits).
  function groupCard(digits) {
    var sizes = cardNetwork(digits) === AMEX ? [4, 6, 5] : [4, 4, 4, 4, 3], parts = [], at = 0;
    for (var i = 0; i < sizes.length && at < digits.length; i++) {
      parts.push(digits.slice(at, at + sizes[i]));
      at += sizes[i];
    }
    return parts.join(" ");
  }

  function groupExpiry(digits, deleting) {
    if (digits.length > 2) return digits.slice(0, 2) + "/" + digits.slice(2);
    return digits.length === 2 && !deleting ? digits + "/" : digits;
  }

  function parseExpiry(value) {
    var m = /^\s*([0-9]{1,2})\s*\/\s*([0-9]{2}|[0-9]{4})\s*$/.exec(value);
    if (!m) return null;
    var month = parseInt(m[1], 10), year = parseInt(m[2], 10);
    if (m[2].length === 2) year += 2000;
    if (month < 1 || month > 12) return null;
    return {month: month, year: year};
  }

  function checkUpi() {
    var vpa = fields.vpa.value.trim();
    if (!vpa) return {vpa: "Enter your UPI ID."};
    if (!VPA_RE.test(vpa)) return {vpa: "Enter a valid UPI ID, like name@bank."};
    return null;
  }

  function checkCard() {
    var errors = {}, any = false;
    var digits = cardDigits(fields.number.value.trim());
    if (!fields.number.value.trim()) errors.number = "Enter the card number.";
    else if (!digits || digits.length < 13 || digits.length > 19) errors.number = "A card number has 13 to 19 digits.";
    else if (!luhnOk(digits)) errors.number = "This card number is not valid. Check it for typos.";
    var expiry = parseExpiry(fields.expiry.value);
    var now = new Date();
    if (!fields.expiry.value.trim()) errors.expiry = "Enter the expiry date.";
    else if (!expiry) errors.expiry = "Enter the expiry as MM/YY.";
    else if (expiry.year * 12 + expiry.month < now.getFullYear() * 12 + now.getMonth() + 1) {
      errors.expiry = "This card has expired.";
    }
    var cvvLength = cvvDigits(cardNetwork(digits || ""));
    if (!new RegExp("^[0-9]{" + cvvLength + "}$").test(fields.cvv.value.trim())) {
      errors.cvv = cvvLength === 4 ? "An American Express CVV is the 4 digits on the front of the card."
                                   : "The CVV is the 3 digits on the back of your card.";
    }
    for (var k in errors) if (Object.prototype.hasOwnProperty.call(errors, k)) any = true;
    return any ? errors : null;
  }

  // ---- form ------------------------------------------------------------------------------------

  var fields = {
    vpa: byTestId("vpa-input"),
    number: byTestId("card-number-input"),
    expiry: byTestId("expiry-input"),
    cvv: byTestId("cvv-input"),
    holder: byTestId("cardholder-name-input")
  };
  var errorBoxes = {
    vpa: document.getElementById("vpa-error"),
    number: document.getElementById("card-number-error"),
    expiry: document.getElementById("expiry-error"),
    cvv: document.getElementById("cvv-error"),
    holder: document.getElementById("holder-name-error")
  };
  var forms = {upi: byTestId("upi-form"), card: byTestId("card-form")};
  var methodButtons = root.querySelectorAll("[data-method]");
  var payButton = byTestId("pay-button");
  var formError = document.getElementById("form-error");
  var networkBadge = document.getElementById("card-network");
  var states = {
    form: document.getElementById("pay-panel"),
    processing: byTestId("processing-state"),
    pending: byTestId("still-processing-state"),
    success: byTestId("success-state"),
    failure: byTestId("error-state"),
    paid: byTestId("already-paid-state")
  };
  var method = "upi";

  function setFieldError(name, message) {
    var input = fields[name], box = errorBoxes[name];
    if (message) {
      box.textContent = message;
      box.hidden = false;
      input.setAttribute("aria-invalid", "true");
    } else {
      box.textContent = "";
      box.hidden = true;
      input.removeAttribute("aria-invalid");
    }
  }

  function clearErrors() {
    for (var name in fields) if (Object.prototype.hasOwnProperty.call(fields, name)) setFieldError(name, null);
    formError.hidden = true;
    formError.textContent = "";
  }

  function showFormError(message) {
    formError.textContent = message;
    formError.hidden = false;
  }

  function showErrors(errors) {
    var first = null;
    for (var name in errors) {
      if (!Object.prototype.hasOwnProperty.call(errors, name)) continue;
      setFieldError(name, errors[name]);
      first = first || fields[name];
    }
    if (first) first.focus();
  }

  function selectMethod(next) {
    method = next;
    Array.prototype.forEach.call(methodButtons, function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-method") === next ? "true" : "false");
    });
    for (var name in forms) {
      if (!Object.prototype.hasOwnProperty.call(forms, name)) continue;
      forms[name].hidden = name !== next;
      forms[name].disabled = name !== next; // a hidden method's fields are neither checked nor tabbable
    }
    clearErrors();
  }

  Array.prototype.forEach.call(methodButtons, function (b) {
    b.addEventListener("click", function () { selectMethod(b.getAttribute("data-method")); });
  });

  // Formatting while typing: digits only, grouped as the card prints them, the caret kept after
  // the same digit wherever the edit was made (a space or slash deleted takes its digit with it).
  var lastDigits = {}; // per input, to tell "a separator was deleted" from "a digit was"

  function reformat(input, event, maxDigits, format) {
    var value = input.value, caret = input.selectionStart === null ? value.length : input.selectionStart;
    var before = value.slice(0, caret).replace(/[^0-9]/g, "").length;
    var digits = value.replace(/[^0-9]/g, "");
    var kind = (event && event.inputType) || "";
    var previous = lastDigits[input.id] || "";
    if (kind.indexOf("delete") === 0 && digits === previous && digits.length) {
      var at = kind === "deleteContentBackward" ? before - 1 : before;
      if (at >= 0 && at < digits.length) {
        digits = digits.slice(0, at) + digits.slice(at + 1);
        before = at;
      }
    }
    digits = digits.slice(0, maxDigits(digits));
    before = Math.min(before, digits.length);
    var text = format(digits, kind.indexOf("delete") === 0);
    input.value = text;
    lastDigits[input.id] = digits;
    var pos = 0;
    for (var seen = 0; pos < text.length && seen < before; pos++) if (/[0-9]/.test(text[pos])) seen++;
    // After a typed digit that completed a group, the caret goes past the separator too.
    while (pos < text.length && !/[0-9]/.test(text[pos]) && kind.indexOf("insert") === 0) pos++;
    if (document.activeElement === input) input.setSelectionRange(pos, pos);
  }

  var networkLogo = byTestId("card-network-logo");

  function showNetwork(network) {
    networkBadge.textContent = network;
    networkLogo.setAttribute("data-network", network);
    Array.prototype.forEach.call(networkLogo.querySelectorAll("svg"), function (svg) {
      // An SVG element has no `hidden` property: the attribute (and the page's [hidden] rule) it is.
      if (svg.getAttribute("data-network") === network) svg.removeAttribute("hidden");
      else svg.setAttribute("hidden", "");
    });
    fields.cvv.maxLength = cvvDigits(network);
    if (fields.cvv.value.length > fields.cvv.maxLength) fields.cvv.value = fields.cvv.value.slice(0, fields.cvv.maxLength);
  }

  fields.number.addEventListener("input", function (event) {
    reformat(fields.number, event, function (d) { return cardNetwork(d) === AMEX ? 15 : 19; }, groupCard);
    showNetwork(cardNetwork(lastDigits[fields.number.id]));
  });
  fields.expiry.addEventListener("input", function (event) {
    // A first digit that cannot start a month is the month itself: 9 is 09/.
    var value = fields.expiry.value.replace(/^([2-9])/, "0$1").replace(/^([0-9])\/(.*)$/, "0$1/$2");
    if (value !== fields.expiry.value) {
      var grew = value.length - fields.expiry.value.length, caret = fields.expiry.selectionStart;
      fields.expiry.value = value;
      if (caret !== null && document.activeElement === fields.expiry) fields.expiry.setSelectionRange(caret + grew, caret + grew);
    }
    reformat(fields.expiry, event, function () { return 6; }, groupExpiry);
  });
  fields.cvv.addEventListener("input", function () {
    var digits = fields.cvv.value.replace(/[^0-9]/g, "").slice(0, fields.cvv.maxLength);
    if (digits !== fields.cvv.value) fields.cvv.value = digits;
  });
  Object.keys(fields).forEach(function (name) {
    fields[name].addEventListener("input", function () { setFieldError(name, null); });
  });

  function show(state) {
    for (var name in states) {
      if (Object.prototype.hasOwnProperty.call(states, name)) states[name].hidden = name !== state;
    }
    // Move focus to the new state's heading, so keyboard and screen-reader users follow along.
    var heading = states[state].querySelector("[tabindex='-1']");
    if (heading) heading.focus();
  }

  function payload() {
    if (method === "upi") return {order_id: orderId, method: "upi", vpa: fields.vpa.value.trim()};
    var expiry = parseExpiry(fields.expiry.value);
    var card = {
      number: fields.number.value.trim(),
      expiry_month: expiry.month,
      expiry_year: expiry.year,
      cvv: fields.cvv.value.trim()
    };
    var holder = fields.holder.value.trim();
    if (holder) card.holder_name = holder;
    return {order_id: orderId, method: "card", card: card};
  }

  var SERVER_FIELDS = {vpa: "vpa", "card.number": "number", "card.cvv": "cvv",
                       "card.expiry_month": "expiry", "card.expiry_year": "expiry", "card.holder_name": "holder"};

  // One Idempotency-Key per attempt: resending the same details after a lost answer reuses it,
  // so the server makes at most one payment of them; any answer ends the attempt.
  var attempt = null;

  function idempotencyKey(body) {
    if (attempt && attempt.body === body) return attempt.key;
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); });
    var key = "chk_" + hex.join("");
    attempt = {body: body, key: key};
    return key;
  }

  // The disabled pay button is the one record of "a payment is being sent".
  function setBusy(on) {
    payButton.disabled = on;
    payButton.setAttribute("aria-busy", on ? "true" : "false");
    // A disabled button drops focus to the page: give it back, so the keyboard stays on a control.
    if (!on && (!document.activeElement || document.activeElement === document.body)) payButton.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (payButton.disabled) return;
    clearErrors();
    var errors = method === "upi" ? checkUpi() : checkCard();
    if (errors) {
      showErrors(errors);
      return;
    }
    setBusy(true);
    // Until the answer names the payment, the SDK counts it as in flight (it asks before closing).
    notifyParent("payment_submitting", {orderId: orderId});
    var body = JSON.stringify(payload());
    fetch("/api/v1/payments/public", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Accept": "application/json",
                "Idempotency-Key": idempotencyKey(body)},
      body: body,
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return {ok: response.ok, status: response.status, body: body};
      });
    }).then(function (result) {
      setBusy(false);
      attempt = null;
      if (!result.ok) {
        notifyParent("payment_not_started", {orderId: orderId});
        var err = (result.body && result.body.error) || {};
        var field = SERVER_FIELDS[err.field];
        var message = err.description || "The payment could not be started. Please try again.";
        if (err.field === "order_id") return orderPaidElse(function () { showFormError(message); });
        if (!field) return showFormError(message);
        var errors = {};
        errors[field] = message;
        showErrors(errors);
        return;
      }
      // The card number and CVV are not needed any more: drop them from the page.
      fields.number.value = "";
      fields.cvv.value = "";
      lastDigits = {};
      showNetwork("");
      current = {paymentId: result.body.id, status: result.body.status};
      show("processing");
      // The SDK learns of the payment now, so it can ask before closing and follow it if closed.
      notifyParent("payment_started", {paymentId: current.paymentId, orderId: orderId, status: current.status});
      poll(result.body.id, Date.now());
    }).catch(function () {
      notifyParent("payment_not_started", {orderId: orderId});
      showFormError("We could not reach the payment server. Check your connection and try again.");
      setBusy(false);
    });
  });

  // Another payment of this order won (another tab, another device): that is not a failure.
  function orderPaidElse(otherwise) {
    getJson("/api/v1/orders/" + encodeURIComponent(orderId) + "/public")
      .catch(function () { return {}; })
      .then(function (order) { if (order.status === "paid") show("paid"); else otherwise(); });
  }

  // A JSON answer of the gateway; any status but 2xx rejects, as a network error does.
  function getJson(path) {
    return fetch(path, {headers: {"Accept": "application/json"}, cache: "no-store"}).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function poll(paymentId, startedAt) {
    window.setTimeout(function () {
      getJson("/api/v1/payments/" + encodeURIComponent(paymentId) + "/public")
        .then(function (payment) {
          current.status = payment.status;
          if (payment.status === "success") succeeded(payment);
          else if (payment.status === "failed") failed(payment);
          else again();
        })
        .catch(again);

      function again() {
        // Network hiccups are retried; a payment that never settles ends the wait, neutrally: it
        // may still succeed, so there is no pay-again button.
        if (Date.now() - startedAt > POLL_GIVE_UP_MS) {
          byTestId("pending-payment-id").textContent = paymentId;
          show("pending");
        } else {
          poll(paymentId, startedAt);
        }
      }
    }, POLL_MS);
  }

  var callbackForm = document.getElementById("callback-form");

  function succeeded(payment) {
    byTestId("payment-id").textContent = payment.id;
    show("success");
    if (!embedded && !callbackForm) return;
    fetchResult(payment.id, 3).then(function (result) {
      var data = {paymentId: payment.id, orderId: payment.order_id, status: "success"};
      if (result && result.signature) data.signature = result.signature;
      if (callbackForm) return postToMerchant(data);
      notifyParent("payment_success", data);
    });
  }

  // Hosted checkout: back to the merchant's callback_url with Razorpay's form fields.
  function postToMerchant(data) {
    if (!data.signature) {
      // Without the signature the shop could not trust the form: the shopper goes back by the link.
      byTestId("callback-message").textContent = "Your payment is complete. We could not take you back to the shop " +
                                                 "automatically; the shop will still be told.";
      return;
    }
    callbackForm.elements.razorpay_payment_id.value = data.paymentId;
    callbackForm.elements.razorpay_order_id.value = data.orderId;
    callbackForm.elements.razorpay_signature.value = data.signature;
    callbackForm.hidden = false; // the manual way, should the automatic submit be slow
    callbackForm.submit();
  }

  // The settled payment's details the polling endpoint does not carry: the success signature for
  // the merchant, the failure reason for the shopper.
  function fetchResult(paymentId, tries) {
    return getJson("/checkout/orders/" + encodeURIComponent(orderId) + "/payments/" + encodeURIComponent(paymentId))
      .catch(function () {
        if (tries <= 1) return null;
        return new Promise(function (resolve) { window.setTimeout(resolve, 1000); }).then(function () {
          return fetchResult(paymentId, tries - 1);
        });
      });
  }

  function failed(payment) {
    fetchResult(payment.id, 2).then(function (result) {
      var error = (result && result.error) || {code: "PAYMENT_FAILED", description: null};
      var why = error.description;
      byTestId("error-message").textContent = why
        ? why + ". No money was taken."
        : "The payment could not be completed. No money was taken.";
      show(result && result.orderPaid ? "paid" : "failure");
      notifyParent("payment_failed", {paymentId: payment.id, orderId: payment.order_id || orderId, status: "failed",
                                      error: {code: error.code || "PAYMENT_FAILED",
                                              description: why || "The payment could not be completed."}});
    });
  }

  byTestId("retry-button").addEventListener("click", function () {
    current = {paymentId: null, status: null};
    clearErrors();
    show("form");
    (method === "upi" ? fields.vpa : fields.number).focus();
  });

  selectMethod("upi");
  showNetwork("");
})();
