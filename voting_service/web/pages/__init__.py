"""The public pages: open votes, candidates, the embed widget, the results page's objection
form and the notices."""
