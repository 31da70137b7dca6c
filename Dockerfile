# contender's service image. Build: docker build -t contender:0.2.0 .
# Run:   docker run -p 8080:8080 -e MLFLOW_TRACKING_URI=... -e CONTENDER_MODEL=churn \
#          -e CONTENDER_LOG_STORE=postgresql://... contender:0.2.0
# Kubernetes manifests for it: deploy/kubernetes/.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid/gid, so `runAsNonRoot` can check it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 contender \
    && useradd --system --uid 10001 --gid contender --home-dir /var/lib/contender \
        --no-create-home --shell /usr/sbin/nologin contender \
    && install -d -o contender -g contender -m 0750 /var/lib/contender /var/lib/contender/spill

COPY pyproject.toml README.md /tmp/build/
COPY src /tmp/build/src
RUN pip install /tmp/build && rm -rf /tmp/build

# Relative paths in the settings (a SQLite log, the spill directory) land here.
WORKDIR /var/lib/contender
USER 10001:10001

# In a container the service must listen on every interface (its default is 127.0.0.1).
ENV CONTENDER_HOST=0.0.0.0 \
    CONTENDER_PORT=8080
EXPOSE 8080

# SIGTERM flushes the prediction log before the process exits: give it time
# (docker stop --time 60; Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["contender"]
CMD ["serve"]
