// Node icons as small inline SVGs (no icon font: Debian's chromium lacks many symbol glyphs).
const P = {
  start: <path d="M5 3l8 5-8 5z" fill="currentColor" stroke="none" />,
  agent: <path d="M8 1.5l1.6 4.9 4.9 1.6-4.9 1.6L8 14.5l-1.6-4.9L1.5 8l4.9-1.6z" fill="currentColor" stroke="none" />,
  end: <rect x="4" y="4" width="8" height="8" fill="currentColor" stroke="none" />,
  note: <path d="M3 13l1-3 7-7 2 2-7 7zM10 4l2 2" />,
  file_search: <><circle cx="7" cy="7" r="4" /><path d="M10 10l4 4" /></>,
  guardrails: <path d="M8 1.8l5 2v4c0 3-2.2 5.2-5 6.4-2.8-1.2-5-3.4-5-6.4v-4z" />,
  mcp: <><circle cx="8" cy="8" r="2.2" /><path d="M8 1.5v2.3M8 12.2v2.3M1.5 8h2.3M12.2 8h2.3M3.4 3.4l1.6 1.6M11 11l1.6 1.6M3.4 12.6L5 11M11 5l1.6-1.6" /></>,
  if_else: <path d="M3 8h4l5-4M7 8l5 4M10 3h2.5v2.5M10 13h2.5v-2.5" />,
  while: <path d="M13 8a5 5 0 1 1-1.5-3.5M13 2.5v3h-3" />,
  human_approval: <><circle cx="8" cy="5" r="2.5" /><path d="M3 14c0-3 2.2-4.5 5-4.5s5 1.5 5 4.5" /></>,
  transform: <path d="M3 5h8l-2-2M13 11H5l2 2" />,
  set_state: <><rect x="2.5" y="3" width="11" height="10" rx="1.5" /><path d="M5 7h6M5 10h4" /></>,
};

export function Icon({ type }) {
  return (
    <svg viewBox="0 0 16 16" width="12" height="12" fill="none" stroke="currentColor" strokeWidth="1.7" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true">
      {P[type] || <text x="4" y="12" fontSize="11" fill="currentColor" stroke="none">?</text>}
    </svg>
  );
}
