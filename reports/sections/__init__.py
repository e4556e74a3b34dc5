"""The report's sections, one module per part of the report; :data:`reports.build.SECTION_BUILDERS` orders them."""
