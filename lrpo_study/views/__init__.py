"""What a study looks like from outside: the trial record every reader shares (``record``), a trial's figure
and note on its dashboard page (``trial``), and the HTML page comparing every method's study (``report``).
"""
