// Comments' @mention autocompletion: the suggestions come from the server (htmx); picking one completes the
// "@..." being typed at the end of the comment with the member's address. Without it, typing the address works.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var pick = event.target.closest ? event.target.closest(".mention-pick") : null;
    if (!pick) return;
    var list = pick.closest(".mention-list");
    var box = list && list.parentElement.querySelector("textarea");
    if (!box) return;
    box.value = box.value.replace(/@[\w.+@-]*$/, "") + pick.getAttribute("data-handle") + " ";
    list.innerHTML = "";
    box.focus();
  });
})();
