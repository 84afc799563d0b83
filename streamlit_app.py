"""The app's entry point: it only routes (the pages and their menu are pages.common.app_pages)."""
import streamlit as st

from pages.common import route

st.set_page_config(page_title="lungfake: lung histopathology tiles", page_icon=":microscope:", layout="wide")
route()
