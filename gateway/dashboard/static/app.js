// The dashboard's only script: keeps the overview live over server-sent events. The server sends escaped HTML
// fragments it rendered itself; voucher events are shown with textContent only.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var feed = document.getElementById("feed");
  var ZH = { ACCEPTED: "已受理", SENT: "已发送", DELIVERED: "已送达", PAID: "已支付", FAILED: "支付失败",
             REJECTED: "银行拒绝", IN_DOUBT: "状态待查", RETURNED: "已退回", CANCELLED: "已撤销" };

  function setStatus(on, text) {
    status.className = on ? "live-on" : "live-off";
    status.textContent = text;
  }

  function span(cls, text) {
    var el = document.createElement("span");
    if (cls) { el.className = cls; }
    el.textContent = text;
    return el;
  }

  var source = new EventSource("/events");
  source.addEventListener("open", function () { setStatus(true, "● 实时 live"); });
  source.addEventListener("error", function () { setStatus(false, "○ 重新连接中… reconnecting"); });
  source.addEventListener("signed-out", function () { source.close(); window.location.assign("/login"); });

  source.addEventListener("summary", function (e) {
    var parts = JSON.parse(e.data).fragments;
    Object.keys(parts).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.innerHTML = parts[id]; }
    });
  });

  source.addEventListener("voucher", function (e) {
    var v = JSON.parse(e.data);
    if (!feed || !v.key) { return; }
    var li = document.createElement("li");
    li.setAttribute("data-key", v.key);
    li.setAttribute("data-state", v.state);
    li.appendChild(span("muted", v.at || ""));
    var a = document.createElement("a");
    a.href = "/vouchers/" + encodeURIComponent(v.key);
    a.textContent = v.key;
    li.appendChild(a);
    li.appendChild(span("", v.bank));
    li.appendChild(span("amount", v.amount || ""));
    var badge = span("badge st-" + v.state, (ZH[v.state] || v.state) + " ");
    badge.appendChild(span("en", v.state));
    li.appendChild(badge);
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > 100) { feed.removeChild(feed.lastChild); }
  });
})();
