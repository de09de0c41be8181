// The review agenda from the keyboard: j / k (or the arrow keys while an item has focus) move between items.
// Everything also works without it: items link to each other and decisions are plain forms.
(function () {
  "use strict";

  function items() {
    return Array.prototype.slice.call(document.querySelectorAll(".agenda-item"));
  }

  function current(list) {
    var active = document.activeElement;
    var inside = active && active.closest ? active.closest(".agenda-item") : null;
    if (inside) return list.indexOf(inside);
    var marked = document.querySelector(".agenda-item.agenda-current");
    return marked ? list.indexOf(marked) : -1;
  }

  function go(step) {
    var list = items();
    if (!list.length) return;
    var at = current(list);
    var next = at < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(Math.max(at + step, 0), list.length - 1);
    list.forEach(function (item) { item.classList.remove("agenda-current"); });
    var item = list[next];
    item.classList.add("agenda-current");
    item.focus({ preventScroll: true });
    item.scrollIntoView({ block: "start", behavior: "smooth" });
    if (history.replaceState) history.replaceState(null, "", "#" + item.id);
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    var onItem = event.target.classList && event.target.classList.contains("agenda-item");
    if (event.key === "j" || (onItem && event.key === "ArrowDown")) {
      event.preventDefault();
      go(1);
    } else if (event.key === "k" || (onItem && event.key === "ArrowUp")) {
      event.preventDefault();
      go(-1);
    }
  });

  // The item links ("Next item") move focus too, so j / k continue from there.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-agenda]");
    if (!link) return;
    event.preventDefault();
    go(link.getAttribute("data-agenda") === "next" ? 1 : -1);
  });

  // After a decision htmx swaps the item: keep the keyboard on it.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    var item = event.detail && event.detail.target;
    var fresh = item && item.id ? document.getElementById(item.id) : null;
    if (fresh && fresh.classList.contains("agenda-item")) {
      fresh.classList.add("agenda-current");
      fresh.focus({ preventScroll: true });
    }
  });
})();
