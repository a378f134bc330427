// The official Razorpay Node SDK against the gateway, as a merchant's server would use it.
//   node sdk_flow.js <gateway url> <key> <secret> <settled payment id>
// Prints one JSON object with what each call returned (tests/test_node_sdk.py asserts on it).
const Razorpay = require("razorpay");

const [base, key, secret, paymentId] = process.argv.slice(2);
function client(keySecret) {
  const made = new Razorpay({ key_id: key, key_secret: keySecret });
  // The SDK has no option for its host; its axios instance takes the gateway's /api as the base.
  made.api.rq.defaults.baseURL = `${base}/api`;
  return made;
}
const rzp = client(secret);

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function outcome(call) {
  try {
    return { ok: await call() };
  } catch (e) {
    return { status: e.statusCode, error: e.error || String(e) };
  }
}

async function main() {
  const out = {};
  const started = Math.floor(Date.now() / 1000);
  out.order = await rzp.orders.create({ amount: 50000, currency: "INR", receipt: "node_1", notes: { sdk: "node" } });
  out.fetchedOrder = await rzp.orders.fetch(out.order.id);
  out.orders = await rzp.orders.all({ count: 1 });

  // Polling every 2 s on one keep-alive connection, as a checkout's server does: each call reuses
  // the connection after 2 s idle, which a server closing idle connections at 2 s races (gunicorn's
  // default keep-alive failed 1 of 6 such calls here with ECONNRESET).
  out.polls = [];
  for (let i = 0; i < 6; i += 1) {
    if (i) await pause(2000);
    const r = await outcome(() => rzp.payments.fetch(paymentId));
    out.polls.push(r.ok ? r.ok.status : `error ${r.status}: ${JSON.stringify(r.error)}`);
  }

  const payment = await rzp.payments.fetch(paymentId);
  out.captured = await rzp.payments.capture(paymentId, payment.amount, "INR");
  out.refund = await rzp.payments.refund(paymentId, { amount: 100, notes: { why: "node" }, receipt: "node_r1" });
  out.refundById = await rzp.payments.fetchRefund(paymentId, out.refund.id);
  out.refundFetched = await rzp.refunds.fetch(out.refund.id);
  out.refunds = await rzp.refunds.all({ from: started - 5, to: Math.floor(Date.now() / 1000) + 5, count: 100 });
  out.paymentRefunds = await rzp.refunds.all({ payment_id: paymentId });
  out.orderPayments = await rzp.orders.fetchPayments(payment.order_id);
  out.overRefund = await outcome(() => rzp.payments.refund(paymentId, { amount: payment.amount }));
  out.payments = await rzp.payments.all({ from: started - 5, count: 5 });
  out.badSecret = await outcome(() => client("wrong").orders.all());
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : JSON.stringify(e));
  process.exit(1);
});
