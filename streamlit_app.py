import streamlit as st

st.set_page_config(page_title="lungfake: lung histopathology tiles", page_icon=":microscope:", layout="wide")
st.navigation(
    [
        st.Page("pages/score.py", title="Score a tile", icon=":material/biotech:", default=True),
        st.Page("pages/batch.py", title="Score a batch", icon=":material/grid_view:"),
        st.Page("pages/region.py", title="Map a region", icon=":material/map:"),
        st.Page("pages/dashboard.py", title="Evaluation dashboard", icon=":material/monitoring:"),
        st.Page("pages/errors.py", title="Error browser", icon=":material/image_search:"),
        st.Page("pages/about.py", title="About / model card", icon=":material/info:"),
    ]
).run()
