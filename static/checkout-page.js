/* The checkout page: method choice, client-side checks that mirror the server's (app/validation.py),
 * the payment sent as a JSON POST (card data never goes into a URL), polling every 2 s, and the
 * result. Embedded in the SDK's iframe it also reports to the parent page with postMessage, only
 * ever to the parent's origin (data-parent-origin, validated by the server). */
(function () {
  "use strict";

  var root = document.querySelector('[data-test-id="checkout-container"]');
  if (!root) return;

  var POLL_MS = 2000;
  var POLL_GIVE_UP_MS = 10 * 60 * 1000;
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

  function requestClose() {
    notifyParent("close_modal", {paymentId: current.paymentId, orderId: orderId, status: current.status});
  }

  Array.prototype.forEach.call(root.querySelectorAll('[data-action="close"]'), function (button) {
    button.addEventListener("click", requestClose);
  });
  if (embedded) {
    // Keys typed inside the iframe never reach the merchant page: forward Escape as close_modal.
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") requestClose();
    });
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
    if (!/^[0-9]{3,4}$/.test(fields.cvv.value.trim())) errors.cvv = "The CVV is the 3 or 4 digits on your card.";
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
    success: byTestId("success-state"),
    failure: byTestId("error-state")
  };
  var method = "upi";
  var busy = false;

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

  // Light formatting while typing: card digits in groups of four, a slash in the expiry date.
  fields.number.addEventListener("input", function () {
    var value = fields.number.value, digits = value.replace(/[ -]/g, "");
    networkBadge.textContent = cardNetwork(/^[0-9]*$/.test(digits) ? digits : "");
    var atEnd = fields.number.selectionStart === value.length;
    if (!atEnd || !/^[0-9]*$/.test(digits)) return;
    var grouped = digits.replace(/([0-9]{4})(?=[0-9])/g, "$1 ");
    if (grouped !== value) fields.number.value = grouped;
  });
  fields.expiry.addEventListener("input", function () {
    var value = fields.expiry.value;
    if (/^[0-9]{3,4}$/.test(value)) fields.expiry.value = value.slice(0, 2) + "/" + value.slice(2);
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

  function setBusy(on) {
    busy = on;
    payButton.disabled = on;
    payButton.setAttribute("aria-busy", on ? "true" : "false");
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) return;
    clearErrors();
    var errors = method === "upi" ? checkUpi() : checkCard();
    if (errors) {
      showErrors(errors);
      return;
    }
    setBusy(true);
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
        var err = (result.body && result.body.error) || {};
        var field = SERVER_FIELDS[err.field];
        var message = err.description || "The payment could not be started. Please try again.";
        if (field) showErrors(singleError(field, message));
        else showFormError(message);
        return;
      }
      // The card number and CVV are not needed any more: drop them from the page.
      fields.number.value = "";
      fields.cvv.value = "";
      networkBadge.textContent = "";
      current = {paymentId: result.body.id, status: result.body.status};
      show("processing");
      poll(result.body.id, Date.now());
    }).catch(function () {
      setBusy(false);
      showFormError("We could not reach the payment server. Check your connection and try again.");
    });
  });

  function singleError(field, message) {
    var errors = {};
    errors[field] = message;
    return errors;
  }

  function poll(paymentId, startedAt) {
    window.setTimeout(function () {
      fetch("/api/v1/payments/" + encodeURIComponent(paymentId) + "/public",
            {headers: {"Accept": "application/json"}, cache: "no-store"})
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (payment) {
          current.status = payment.status;
          if (payment.status === "success") succeeded(payment);
          else if (payment.status === "failed") failed(payment);
          else again();
        })
        .catch(again);

      function again() {
        // Network hiccups are retried; only a payment that never settles ends the wait.
        if (Date.now() - startedAt > POLL_GIVE_UP_MS) {
          failed({id: paymentId, status: current.status},
                 "The payment is taking longer than expected. It will be settled automatically; " +
                 "check with the merchant before paying again.");
        } else {
          poll(paymentId, startedAt);
        }
      }
    }, POLL_MS);
  }

  function succeeded(payment) {
    byTestId("payment-id").textContent = payment.id;
    show("success");
    if (!embedded) return;
    fetchResult(payment.id, 3).then(function (result) {
      var data = {paymentId: payment.id, orderId: payment.order_id, status: "success"};
      if (result && result.signature) data.signature = result.signature;
      notifyParent("payment_success", data);
    });
  }

  // The settled payment's details the polling endpoint does not carry: the success signature for
  // the merchant, the failure reason for the shopper.
  function fetchResult(paymentId, tries) {
    return fetch("/checkout/payments/" + encodeURIComponent(paymentId) + "/result",
                 {headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .catch(function () {
        if (tries <= 1) return null;
        return new Promise(function (resolve) { window.setTimeout(resolve, 1000); }).then(function () {
          return fetchResult(paymentId, tries - 1);
        });
      });
  }

  function failed(payment, reason) {
    var known = reason ? Promise.resolve({errorDescription: reason}) : fetchResult(payment.id, 2);
    known.then(function (result) {
      var why = result && result.errorDescription;
      byTestId("error-message").textContent = why
        ? why + (reason ? "" : ". No money was taken.")
        : "The payment could not be completed. No money was taken.";
      show("failure");
      notifyParent("payment_failed", {paymentId: payment.id, orderId: payment.order_id || orderId,
                                      status: payment.status || "failed"});
    });
  }

  byTestId("retry-button").addEventListener("click", function () {
    current = {paymentId: null, status: null};
    clearErrors();
    show("form");
    (method === "upi" ? fields.vpa : fields.number).focus();
  });

  selectMethod("upi");
})();
