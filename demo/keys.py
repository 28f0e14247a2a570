"""Keyboard shortcuts: a page script installed once by a ``load`` event, and their list for the page.

The script clicks the app's own buttons (by ``elem_id``), so a shortcut does exactly
what the button does. A label key writes the label id into a hidden textbox
(``#key-label``) whose input event sets the label; two digits typed quickly
(``1`` then ``2``) pick label 12. Keys typed into a text box are left alone.
"""

import json

# The polygon tool's name in the page (demo.panel_edit.POLYGON_TOOL): its keys act only while it is chosen.
POLYGON_TOOL = "Polygon (click vertices)"

SHORTCUTS_MD = """\
| key | does |
| --- | --- |
| `0` ... `9` (two digits quickly for 10 and up) | pick the label to apply (click tools and brush) |
| `Ctrl+Z` / `Ctrl+Shift+Z` (or `Ctrl+Y`) | undo / redo |
| `Ctrl+S` | save the correction |
| `+` / `-` | zoom the overlay in (around the last click) / out |
| `[` / `]` | brush (and dot tool) smaller / larger |
| `Enter` / `Esc` | with the polygon tool: close the polygon (fill it with the label) / cancel it |
| `Shift` held while clicking | add the click to the last click's edit (superpixels, a new person: one undo step) |
| `O` | outline the people (person ids) on the overlay, or stop |
| `N` / `P` | next / previous photo of the queue |
| `A` | accept the proposal as correct (unedited photos only) |
"""

# A function for ``demo.load(None, js=KEYS_JS)``: Gradio runs it in the page once per load.
KEYS_JS = """
() => {
  const POLYGON_TOOL = __POLYGON_TOOL__;
  if (window.ssfnetKeys) return [];
  window.ssfnetKeys = true;
  const click = (id) => { const b = document.getElementById(id); if (b) b.click(); };
  let digits = "", timer = null, count = 0, shiftTicked = false;
  const addBox = () => document.querySelector("#add-to-last input[type=checkbox]");
  // Shift ticks "Add to the last click's edit" while held: Gradio's select event reports no modifiers.
  const releaseShift = () => {
    const box = addBox();
    if (shiftTicked && box && box.checked) box.click();
    shiftTicked = false;
  };
  document.addEventListener("keyup", (e) => { if (e.key === "Shift") releaseShift(); });
  window.addEventListener("blur", releaseShift);
  const sendLabel = () => {
    const box = document.querySelector("#key-label textarea, #key-label input");
    if (!box || digits === "") return;
    count += 1;
    box.value = digits + "#" + count;  // always a new value, so the same key twice still fires
    box.dispatchEvent(new Event("input", { bubbles: true }));
    digits = "";
  };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
    if (typing) return;
    if (e.key === "Shift" && !e.repeat) {
      const box = addBox();
      if (box && !box.checked) { box.click(); shiftTicked = true; }
      return;
    }
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    if (ctrl && key === "z") { e.preventDefault(); click(e.shiftKey ? "redo" : "undo"); return; }
    if (ctrl && key === "y") { e.preventDefault(); click("redo"); return; }
    if (ctrl && key === "s") { e.preventDefault(); click("save"); return; }
    if (ctrl || e.altKey) return;
    if (/^[0-9]$/.test(e.key)) {
      digits = (digits + e.key).slice(-2);
      clearTimeout(timer);
      timer = setTimeout(sendLabel, 450);
      return;
    }
    // Only while the polygon tool is chosen; Enter on a focused button would also press it: left to it.
    const tool = document.querySelector("#tool input[type=radio]:checked");
    if (tool && tool.value === POLYGON_TOOL) {
      if (e.key === "Enter" && t.tagName !== "BUTTON") { click("polygon-close"); return; }
      if (e.key === "Escape") { click("polygon-cancel"); return; }
    }
    if (key === "+" || key === "=") click("zoom-in");
    else if (key === "-") click("zoom-out");
    else if (key === "[") click("brush-smaller");
    else if (key === "]") click("brush-bigger");
    else if (key === "n") click("queue-next");
    else if (key === "p") click("queue-prev");
    else if (key === "a") click("accept");
    else if (key === "o") {
      const box = document.querySelector("#show-persons input[type=checkbox]");
      if (box) box.click();
    }
  });
  return [];
}
""".replace("__POLYGON_TOOL__", json.dumps(POLYGON_TOOL))
