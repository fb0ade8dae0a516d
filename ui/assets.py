"""The page's CSS and the one script we add: keyboard shortcuts for the Traces tab.

The script only clicks our own buttons and checkboxes; it never reads or inserts content. Shortcuts do
nothing while focus is in a text field (so typing "j" in a comment types "j"); Escape leaves the field.
"""

CSS = """
.dm-muted { color: var(--body-text-color-subdued); font-size: 0.9em; }
.dm-error { color: var(--error-text-color, #b91c1c); }
.dm-counters { display: flex; flex-wrap: wrap; gap: 6px; }
.dm-counter { padding: 3px 8px; border-radius: 6px; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); font-size: 0.9em; }
.dm-counter.dm-spent { border-color: #d97706; background: rgba(217, 119, 6, 0.12); }
.dm-answer { padding: 10px 14px; border-radius: 8px; border: 2px solid var(--border-color-primary);
  background: var(--background-fill-secondary); }
.dm-answer.dm-status-answered { border-color: #16a34a; }
.dm-answer.dm-status-cancelled, .dm-answer.dm-status-error, .dm-answer.dm-status-format_error,
.dm-answer.dm-status-budget_exhausted, .dm-answer.dm-status-interrupted { border-color: #d97706; }
.dm-answer-label { font-size: 0.8em; text-transform: uppercase; letter-spacing: 0.05em; opacity: 0.7; }
.dm-answer-text { font-size: 1.25em; font-weight: 600; margin: 2px 0 4px; overflow-wrap: anywhere; }
.dm-answer.dm-problem { border-color: #dc2626; }
.dm-answer.dm-problem .dm-answer-text, .dm-answer.dm-waiting .dm-answer-text { font-size: 1em; font-weight: 500; }
.dm-answer.dm-waiting, .dm-answer.dm-status-running { border-color: #2563eb; }
.dm-answer.dm-status-pending { border-style: dashed; }
.dm-answer-help { margin: 2px 0 6px; }
.dm-raw { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 160px; overflow: auto; font-size: 0.85em;
  margin: 2px 0 6px; padding: 4px 6px; background: var(--background-fill-primary); border-radius: 4px; }
.dm-tools-off { font-size: 0.85em; margin-top: 6px; color: var(--body-text-color-subdued); }
.dm-tools-off ul { margin: 2px 0 0 1.2em; padding: 0; }
.dm-results { display: flex; flex-direction: column; gap: 12px; }
.dm-call-head { margin-bottom: 6px; }
.dm-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 8px; }
.dm-card { display: flex; gap: 8px; padding: 8px; border: 1px solid var(--border-color-primary);
  border-radius: 8px; background: var(--background-fill-primary); min-width: 0; }
.dm-thumb { width: 64px; height: 64px; object-fit: cover; border-radius: 4px; flex: none;
  background: var(--background-fill-secondary); }
.dm-card-body { min-width: 0; }
.dm-card-title { font-weight: 600; overflow-wrap: anywhere; }
.dm-card-source { font-size: 0.8em; opacity: 0.7; overflow-wrap: anywhere; }
.dm-card-snippet { font-size: 0.9em; overflow-wrap: anywhere; }
.dm-pre { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 320px; overflow: auto; font-size: 0.85em; }
.dm-info summary { cursor: pointer; font-size: 0.9em; }
.dm-kbd { font-family: monospace; padding: 0 4px; border: 1px solid var(--border-color-primary); border-radius: 3px; }
"""

# Which elements count as "typing": text-like inputs, textareas, selects and editable regions. Checkboxes
# and radios do not, so after ticking a label with the mouse the keys still work.
KEYBOARD_JS = """
<script>
(() => {
  if (window.__dmShortcuts) return;
  window.__dmShortcuts = true;
  const TEXT_TYPES = new Set(["", "text", "search", "number", "email", "password", "url", "tel", "date", "time"]);
  const typing = (el) => {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    const tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag === "INPUT") return TEXT_TYPES.has((el.getAttribute("type") || "").toLowerCase());
    return false;
  };
  const visible = (el) => !!el && el.offsetParent !== null;
  const click = (id) => {
    const el = document.getElementById(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (visible(button) && !button.disabled) { button.click(); return true; }
    return false;
  };
  document.addEventListener("keydown", (e) => {
    if (e.isComposing) return;
    const active = document.activeElement;
    if (e.key === "Escape" && typing(active)) { active.blur(); return; }
    if (typing(e.target) || typing(active)) return;
    if (!visible(document.getElementById("tr-next"))) return;  // only on the Traces tab
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      if (click("tr-save-next")) e.preventDefault();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j") { if (click("tr-next")) e.preventDefault(); return; }
    if (e.key === "k") { if (click("tr-prev")) e.preventDefault(); return; }
    if (/^[1-9]$/.test(e.key)) {
      const boxes = document.querySelectorAll("#tr-labels input[type=checkbox]");
      const box = boxes[Number(e.key) - 1];
      if (box) { box.click(); e.preventDefault(); }
    }
  });
})();
</script>
"""
